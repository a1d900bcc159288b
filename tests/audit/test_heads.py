"""The signing key: created once (0600) even by racing starters; heads sign and fail cleanly."""

from __future__ import annotations

import threading

from safepacs.audit.heads import SignedHead, Signer, head_is_signed, load_public_key, message


def test_racing_starters_agree_on_one_key(tmp_path):
    ids: list[str] = []
    barrier = threading.Barrier(6)

    def start() -> None:
        barrier.wait()
        ids.append(Signer(tmp_path / "keys").key_id)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == ["audit-signing.key", "audit-signing.pub"]


def test_a_head_verifies_only_unchanged_and_round_trips(tmp_path):
    signer = Signer(tmp_path)
    head = signer.sign(7, b"\x11" * 32, 1_700_000_000_000)
    pub = load_public_key(tmp_path / "audit-signing.pub")
    assert head_is_signed(head, pub)
    assert SignedHead.from_dict(head.to_dict()) == head
    for changed in (SignedHead(8, head.root, head.timestamp, head.signature, head.key_id),
                    SignedHead(7, b"\x12" * 32, head.timestamp, head.signature, head.key_id),
                    SignedHead(7, head.root, head.timestamp + 1, head.signature, head.key_id)):
        assert not head_is_signed(changed, pub)
    assert message(7, head.root, 1) != message(7, head.root, 2)
