"""The ``depends_on`` graph: one cycle, if there is any."""

from __future__ import annotations


def find_cycle(graph: dict[str, list[str]]) -> list[str]:
    """One dependency cycle as a path (a -> b -> a), or an empty list."""
    done: set[str] = set()
    path: list[str] = []

    def visit(name: str) -> list[str]:
        if name in path:
            return [*path[path.index(name) :], name]
        if name in done:
            return []
        path.append(name)
        for parent in graph.get(name, ()):
            if cycle := visit(parent):
                return cycle
        path.pop()
        done.add(name)
        return []

    for name in graph:
        if cycle := visit(name):
            return cycle
    return []
