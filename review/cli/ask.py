"""``python -m review ask``: questions to the model about one post, one or a conversation."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from review.cli.common import EXIT_REJECTED, make_provider, model_arguments

if TYPE_CHECKING:
    from review.followup import Turn


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ask = sub.add_parser(
        "ask",
        help="ask the model about a post",
        description="Ask the model questions about one post. Without QUESTION, each line of standard input is "
        "a question of one conversation (the images are encoded once for all of them).",
    )
    ask.add_argument("post_id", type=int, metavar="POST_ID")
    ask.add_argument("question", nargs="?", metavar="QUESTION")
    model_arguments(ask)
    ask.add_argument("--max-new-tokens", type=int, default=512, help="answer length limit (default 512)")
    ask.add_argument("--save", type=Path, metavar="FILE", help="write the conversation as JSON to FILE")
    ask.set_defaults(handler=cmd_ask)


def cmd_ask(args: argparse.Namespace) -> int:
    from review.desk import open_desk
    from review.errors import ConfigError, ReviewError
    from review.followup import ask, conversation_json, load_post
    from review.visibility import COMMAND_LINE

    if args.max_new_tokens < 1:
        raise ConfigError("--max-new-tokens must be at least 1")
    desk = open_desk()
    settings = desk.settings
    with desk.sessions() as session:
        post = load_post(session, settings, COMMAND_LINE, args.post_id)
    provider = make_provider(settings, args)
    interactive = args.question is None and sys.stdin.isatty()

    def typed() -> Iterator[str]:
        while True:
            try:
                yield input("question> ")
            except EOFError:
                return

    questions: Iterable[str] = [args.question] if args.question is not None else typed() if interactive else sys.stdin
    turns: list[Turn] = []
    failed = 0
    if interactive:
        print(f"post {post.post_id}: one question per line; an empty line or Ctrl-D ends", file=sys.stderr)
    try:
        for question in questions:
            if not question.strip():
                if interactive:
                    break
                continue
            try:
                turn = ask(provider, post, turns, question, max_new_tokens=args.max_new_tokens)
            except ReviewError as exc:  # a question refused (too long…): say so, go on
                failed += 1
                print(f"error: {exc}", file=sys.stderr)
                continue
            turns.append(turn)
            if turn.error:
                failed += 1
                print(f"error: the model gave no answer: {turn.error}", file=sys.stderr)
            else:
                print(turn.answer if not interactive else f"{turn.answer}\n", flush=True)
    finally:  # the turns answered so far are kept, also on Ctrl-C
        if args.save:
            args.save.write_text(conversation_json(post, turns, provider), encoding="utf-8")
    return EXIT_REJECTED if failed else 0
