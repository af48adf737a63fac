"""Architecture capture: one immutable graph record that serializers, differs and renderers read."""
