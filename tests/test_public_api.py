"""The public surface: every exported name exists and is documented."""

from __future__ import annotations

import inspect

import actors


def test_all_names_exist_and_have_docstrings() -> None:
    for name in actors.__all__:
        obj = getattr(actors, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__doc__, f"actors.{name} has no docstring"
            assert not obj.__module__.startswith("tests")


def test_no_private_module_leaks_into_all() -> None:
    public = {
        name
        for name in dir(actors)
        if not name.startswith("_") and not inspect.ismodule(getattr(actors, name))
    }
    assert set(actors.__all__) == public - {"annotations"}


def test_public_methods_are_documented() -> None:
    for cls in (actors.ActorRef, actors.ActorContext, actors.ActorSystem, actors.DeadLetters):
        for name, member in vars(cls).items():
            if name.startswith("_"):
                continue
            target = member.fget if isinstance(member, property) else member
            if callable(target):
                assert target.__doc__, f"{cls.__name__}.{name} has no docstring"
