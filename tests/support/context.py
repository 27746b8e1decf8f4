"""A small but real Python project in a git repository, for the context engine's tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

PROJECT: dict[str, str] = {
    "README.md": "# shop\n\nA tiny shop: carts, prices and invoices.\n",
    "AGENTS.md": "Run `pytest` before you finish. Keep functions small.\n",
    "shop/__init__.py": "from shop.cart import Cart\n",
    "shop/cart.py": (
        "from shop.pricing import apply_discount\n\n\n"
        "class Cart:\n"
        "    def __init__(self):\n        self.items = []\n\n"
        "    def add_item(self, name, price):\n        self.items.append((name, price))\n\n"
        "    def total(self, code=None):\n"
        "        subtotal = sum(p for _, p in self.items)\n"
        "        return apply_discount(subtotal, code)\n"
    ),
    "shop/pricing.py": (
        "DISCOUNTS = {'HALF': 0.5}\n\n\n"
        "def apply_discount(amount, code):\n"
        "    if code is None:\n        return amount\n"
        "    if code not in DISCOUNTS:\n"
        "        raise ValueError('unknown discount code given to apply_discount')\n"
        "    return amount * DISCOUNTS[code]\n"
    ),
    "shop/invoice.py": (
        "from shop.cart import Cart\n\n\n"
        "def render_invoice(cart: Cart) -> str:\n"
        "    lines = [f'{name}: {price}' for name, price in cart.items]\n"
        "    return '\\n'.join(lines)\n"
    ),
    "tests/test_cart.py": (
        "from shop.cart import Cart\n\n\ndef test_total():\n"
        "    cart = Cart()\n    cart.add_item('a', 2)\n    assert cart.total() == 2\n"
    ),
    "docs/discounts.md": "Discount codes: HALF halves the total.\n",
    "config/schema.json": '{"type": "object", "properties": {"code": {"type": "string"}}}\n',
    ".gitignore": "secret_notes.txt\nbuild_cache/\n",
}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def write_tree(root: Path, files: dict[str, str | bytes]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    repo = tmp_path / "shop"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    write_tree(repo, dict(PROJECT))
    commit_all(repo, "initial")
    return repo
