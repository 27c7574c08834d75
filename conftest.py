"""Source-checkout entry: load the plugin under the same name its pytest11 entry point uses."""

pytest_plugins = ["bias_suite.plugin", "pytester"]
