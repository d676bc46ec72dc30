"""The box's side of federated training: its SuperNode, started only with consent and
kept out of the classroom's way.

    <home>/keys/federation-node.key   the SuperNode's private key (0600)
    <home>/keys/federation.json       the district's invitation, checked and pinned
    <home>/keys/federation-ca.pem     the CA the SuperLink's certificate must chain to

The SuperNode runs at low CPU priority with a cap on its data memory (both inherited by
the ClientApp processes it starts); the ClientApp itself waits for the training window
and for a quiet classroom (gate.py) before each round.
"""

from __future__ import annotations

import json
import os
import resource
from pathlib import Path

from appliance import paths
from federated import district, identity
from sync import enrolment
from sync.files import write_durably

NICE = 10  # below the web app and the tutor


def key_path(home: Path) -> Path:
    return paths.federation_node_key(home)


def invitation_path(home: Path) -> Path:
    return paths.federation_invitation(home)


def request(home: Path, box_id: str) -> dict:
    """The node request to take to the district (the node key is made on first use)."""
    box_keys = enrolment.ensure_box_keys(home, box_id)
    return identity.node_request(box_keys, identity.ensure_node_key(key_path(home)))


def accept_invitation(home: Path, document: dict) -> dict:
    """Pin the district's SuperLink address and CA, if the pinned district key signed them."""
    body = identity.check_invitation(document, enrolment.district_keys(home))
    write_durably(paths.federation_ca(home), body["ca_certificate"].encode())
    write_durably(invitation_path(home), json.dumps(body, indent=2).encode())
    return body


def supernode_command(home: Path, port: int) -> list[str]:
    """The SuperNode for this box: TLS to the pinned CA, authenticated by its node key."""
    if not invitation_path(home).exists():
        raise identity.IdentityError(
            "This box has no federation invitation: `schoolbox federated trust FILE` first."
        )
    invitation = json.loads(invitation_path(home).read_text())
    identity.ensure_node_key(key_path(home))
    return [
        district.tool("flower-supernode"),
        "--superlink", invitation["superlink"],
        "--root-certificates", str(paths.federation_ca(home)),
        "--auth-supernode-private-key", str(key_path(home)),
        "--node-config", f"box-home={json.dumps(str(home))}",
        "--port", str(port),
    ]  # fmt: skip


def environment(home: Path) -> dict[str, str]:
    """The SuperNode's environment: Flower's files (app bundles, caches) in the box's
    home, not in a home directory the service may not write; and glibc's per-thread
    malloc arenas limited, which would otherwise reserve far more than training uses."""
    return {**district.flower_env(), "FLWR_HOME": str(paths.flower(home)),
            "MALLOC_ARENA_MAX": "2", "OMP_NUM_THREADS": "1"}  # fmt: skip


def limit_self(memory_mb: int) -> None:
    """Low priority and a data-memory cap, for this process and all it starts."""
    os.nice(max(0, NICE - os.nice(0)))
    cap = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))
