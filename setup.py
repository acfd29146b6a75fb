"""The one piece of the build that pyproject.toml cannot state: templates/ inside the package.

The mail templates stay at the top of the repository (`templates/emails/`, beside `listserv/`);
a wheel and an editable install both carry them as the package `listserv.templates`, where
`listserv.mail.render` finds them with importlib.resources. Everything else is in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=[*find_namespace_packages(include=["listserv", "listserv.*"]), "listserv.templates"],
    package_dir={"listserv.templates": "templates"},
)
