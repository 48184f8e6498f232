"""Package discovery for uir; everything else is in pyproject.toml.

Every package under ``uir/`` ships (found, never listed by hand, so a new subpackage cannot be
left out of the wheel), and the repository's ``pipelines/`` folder ships as ``uir.pipelines``.
``tests/test_packaging.py`` builds the wheel and checks both.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["uir", "uir.*"]) + ["uir.pipelines"],
    package_dir={"uir.pipelines": "pipelines"},
)
