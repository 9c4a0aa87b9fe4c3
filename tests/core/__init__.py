"""The extension as a whole: configuration, problems, logging, decorators, the drop-in rule."""
