"""A dataset declaration is checked when it is made: every role names declared columns, and
no column has two roles."""

from __future__ import annotations

import dataclasses

import pytest

from datasets import get_dataset

WDBC = get_dataset("wdbc")


def test_a_column_with_two_roles_is_refused():
    with pytest.raises(ValueError, match="columns with two roles: \\['id'\\]"):
        dataclasses.replace(WDBC, roles=dataclasses.replace(WDBC.roles, text=("id",)))


def test_a_row_key_of_undeclared_columns_is_refused():
    with pytest.raises(ValueError, match="row_key names undeclared \\['order_id'\\]"):
        dataclasses.replace(WDBC, row_key=("order_id",))
