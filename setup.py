"""Maps the repository folders onto the ``posedge.*`` import names.

``agent``, ``backoffice``, ``drivers``, ``protocol`` and ``simulator`` are
names other distributions already claim, so each installs as ``posedge.<folder>``. ``posedge``
itself is an implicit namespace package.
Everything else about the distribution lives in ``pyproject.toml``.
"""

from setuptools import find_packages, setup

ROOTS = ("agent", "backoffice", "drivers", "protocol", "simulator")

packages = [
    f"posedge.{pkg}" for root in ROOTS for pkg in find_packages(include=[root, f"{root}.*"])
]
package_dir = {f"posedge.{root}": root for root in ROOTS}

setup(
    packages=packages,
    package_dir=package_dir,
    package_data={
        "posedge.agent": ["py.typed"],
        "posedge.backoffice": ["py.typed"],
        # The dashboard's templates, stylesheet and script (docs/dashboard.md).
        "posedge.backoffice.dashboard": ["templates/*.html", "static/*.css", "static/*.js"],
        "posedge.drivers": ["py.typed"],
        "posedge.protocol": ["py.typed"],
        "posedge.simulator": ["py.typed"],
    },
)
