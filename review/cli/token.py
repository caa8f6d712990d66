"""``python -m review token``: API tokens (add, list, revoke) for the HTTP API.

``add`` prints the token once, on stdout and alone on its line (so that a script can take it);
the desk keeps only its hash. The list shows each token's first characters, never the token.
"""

from __future__ import annotations

import argparse
import sys

SCOPES = "ingest, read, decisions"  # review.tokens.Scope, spelt out so that --help imports no database code


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    scopes = SCOPES
    token = sub.add_parser("token", help="API tokens for the HTTP API: add, list, revoke")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    add = token_sub.add_parser(
        "add",
        help="make a token; it is printed once and cannot be shown again",
        description=f"Make an API token named NAME with the given scopes ({scopes}). The token is printed "
        "once, alone on standard output; the desk keeps only its hash.",
    )
    add.add_argument("name", help="1 to 64 letters, digits, '-', '_' or '.'; unique")
    add.add_argument("--scopes", required=True, help=f"comma-separated: {scopes}")
    token_sub.add_parser("list", help="list the tokens (names, scopes, first characters, last use)")
    token_sub.add_parser("revoke", help="revoke a token: the next request with it is refused").add_argument("name")
    token.set_defaults(handler=cmd_token)


def _when(value: object) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC" if value is not None else "never"


def cmd_token(args: argparse.Namespace) -> int:
    from review.auth import OPERATOR
    from review.desk import open_desk
    from review.tokens import create_token, list_tokens, revoke_token

    desk = open_desk()
    if args.token_command == "add":
        info, token = create_token(desk.sessions, OPERATOR, args.name, args.scopes)
        print(f"token {info.name} ({','.join(s.value for s in info.scopes)}): copy it now, it is not shown again",
              file=sys.stderr)  # fmt: skip
        print(token)
    elif args.token_command == "list":
        tokens = list_tokens(desk.sessions)
        for info in tokens:
            state = "active" if info.active else f"revoked {_when(info.revoked_at)}"
            scopes = ",".join(s.value for s in info.scopes)
            print(f"{info.name}\t{info.hint}…\t{scopes}\t{state}\tlast used {_when(info.last_used_at)}")
        if not tokens:
            print("no tokens yet: python -m review token add NAME --scopes ingest,read,decisions", file=sys.stderr)
    else:
        info = revoke_token(desk.sessions, OPERATOR, args.name)
        print(f"token {info.name} revoked")
    return 0
