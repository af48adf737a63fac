"""visdom for tests: a loopback server per session, per-test clients that never lose an event, the
training sink, replayable offline logs, and the env JSON kept with the test's artifacts."""
