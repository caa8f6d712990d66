"""``python -m review user``: accounts (add, list, passwd, role, activate, deactivate, unlock)."""

from __future__ import annotations

import argparse
import sys

ROLES = ["moderator", "lead", "admin"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    user = sub.add_parser("user", help="accounts: add, list, passwd, role, activate, deactivate, unlock")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    add = user_sub.add_parser(
        "add",
        help="add an account (the first one must be an admin)",
        description="Add an account. The password is typed twice at a terminal, or read from one line of "
        "standard input with --password-stdin.",
    )
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, required=True)
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    add.add_argument("--sso-only", action="store_true", help="no password: the user signs in with single sign-on")
    user_sub.add_parser("list", help="list the accounts")
    passwd = user_sub.add_parser("passwd", help="set a new password (also unlocks the account)")
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    role = user_sub.add_parser("role", help="change an account's role")
    role.add_argument("name")
    role.add_argument("role", choices=ROLES)
    for verb in ("activate", "deactivate"):
        user_sub.add_parser(verb, help=f"{verb} an account").add_argument("name")
    user_sub.add_parser(
        "unlock", help="clear an account's sign-in throttling (every client), after too many failed sign-ins"
    ).add_argument("name")
    user.set_defaults(handler=cmd_user)


def _read_password(args: argparse.Namespace) -> str:
    """From one line of stdin with --password-stdin; else typed twice at a terminal."""
    from review.errors import ConfigError

    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise ConfigError("no terminal to type a password: pipe it in with --password-stdin")
    import getpass

    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise ConfigError("the two passwords differ")
    return first


def cmd_user(args: argparse.Namespace) -> int:
    from review import auth
    from review.desk import open_desk

    desk = open_desk()
    operator = auth.OPERATOR
    if args.user_command == "add":
        password = None if args.sso_only else _read_password(args)
        actor = auth.add_user_as_operator(desk.sessions, args.name, password, args.role)
        print(f"added {actor.username} ({actor.role})")
    elif args.user_command == "list":
        with desk.sessions() as session:
            users = auth.list_users(session, by=operator)
        for u in users:
            state = "active" if u["active"] else "deactivated"
            login = f"{u['last_login_at']:%Y-%m-%d %H:%M} UTC" if u["last_login_at"] else "never"
            locked = f"\tlocked {u['locked']} until {u['locked_until']:%Y-%m-%d %H:%M} UTC" if u["locked"] else ""
            print(f"{u['username']}\t{u['role']}\t{state}\tlast login {login}{locked}")
        if not users:
            print("no users yet: python -m review user add NAME --role admin", file=sys.stderr)
    elif args.user_command == "passwd":
        auth.set_password(desk.sessions, args.name, _read_password(args), by=operator)
        print(f"password of {auth.normalise_username(args.name)} changed (and the account unlocked)")
    elif args.user_command == "role":
        auth.set_role(desk.sessions, args.name, args.role, by=operator)
        print(f"{auth.normalise_username(args.name)} is now {args.role}")
    elif args.user_command == "unlock":
        cleared = auth.unlock(desk.sessions, args.name, by=operator)
        was = f"{cleared} lock{'s' if cleared != 1 else ''} cleared" if cleared else "it was not locked"
        print(f"{auth.normalise_username(args.name)} unlocked ({was}; its failed sign-ins forgotten)")
    else:
        active = args.user_command == "activate"
        released = auth.set_active(desk.sessions, args.name, active, by=operator)
        print(f"{auth.normalise_username(args.name)} {'activated' if active else 'deactivated'}")
        if released:
            print(f"released {released} post{'s' if released != 1 else ''} it was reviewing back to the queue")
    return 0
