__version__ = "0.2.0"

#: The distribution that installs the ``avatarkit`` import package (PyPI's ``avatarkit`` is an
#: unrelated project).
DISTRIBUTION = "avatarkit-core"
