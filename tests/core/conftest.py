"""The core tests take the suite's fixture chain as it is (tests/conftest.py).

A module specialises a link where its tests share an app: ``app`` with the
module's views, ``config`` markers for its keys. Nothing here yet is common to
every core module.
"""
