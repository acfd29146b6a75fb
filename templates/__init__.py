"""The built-in mail templates (`emails/`), shipped inside the package by setup.py."""
