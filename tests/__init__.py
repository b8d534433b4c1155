"""The test suite, by subject: ``tests/<subject>/test_*.py``, shared helpers in ``tests/support/``.

The fixtures (``hub``, ``make_hub``, ``backplane``, ...) live in tests/conftest.py and reach every
subject folder. Helpers are imported by their own names (``from tests.support.helpers import ...``);
a test that needs another subject's helper imports that test module by its full name
(``tests.limits.test_limits``). This file is a package marker and nothing else: a package's
``__init__`` runs on every import of a test, so it stays empty of logic.
"""
