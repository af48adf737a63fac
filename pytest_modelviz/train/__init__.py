"""``short_train``: a short, seeded training run whose result carries checks that name the culprit."""
