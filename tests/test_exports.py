"""The public API is what the README says it is (rule: one public ``__init__`` with ``__all__``)."""

import fsm_session


def test_all_names_exist() -> None:
    for name in fsm_session.__all__:
        assert hasattr(fsm_session, name), name


def test_all_is_sorted_and_unique() -> None:
    assert list(fsm_session.__all__) == sorted(set(fsm_session.__all__))
