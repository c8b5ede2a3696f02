#!/usr/bin/env python3
"""Consume Keyward's events from RabbitMQ, with pika.

    python consume_events.py [--amqp-url URL] [--pattern 'user.*'] [--expect TYPE --timeout S]

Declares a queue of its own (server-named, exclusive, auto-delete: it goes away with this
process), binds it to the `keyward.events` topic exchange with PATTERN (default `#`, every
event) and prints each envelope as one JSON line. With --expect, exits 0 once an event of that
type arrives and 1 if none did within --timeout seconds (default 30).

--amqp-url falls back to AMQP_URL, then amqp://guest:guest@127.0.0.1:5672/%2f.

A real service would declare a durable, named queue instead, so that events published while it
is down wait for it, and would drop duplicates by envelope id in its own database: delivery is
at least once.
"""

import argparse
import json
import os
import sys
import time
from collections import OrderedDict

import pika

EXCHANGE = "keyward.events"


def main() -> int:
    p = argparse.ArgumentParser(description="Print Keyward events from RabbitMQ.")
    p.add_argument("--amqp-url",
                   default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"))
    p.add_argument("--pattern", default="#",
                   help="binding key: an event type, or a pattern like 'user.*' or 'session.#'")
    p.add_argument("--expect", metavar="TYPE", help="exit 0 once an event of this type arrives")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S",
                   help="with --expect: give up (exit 1) after S seconds")
    args = p.parse_args()

    try:
        conn = pika.BlockingConnection(pika.URLParameters(args.amqp_url))
    except pika.exceptions.AMQPError as e:
        print(f"consume_events: cannot connect to RabbitMQ: {e!r}", file=sys.stderr)
        return 1
    try:
        return consume(conn, args)
    except pika.exceptions.AMQPError as e:
        print(f"consume_events: {e!r}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        if conn.is_open:
            conn.close()


def consume(conn: pika.BlockingConnection, args: argparse.Namespace) -> int:
    ch = conn.channel()
    # The same declaration as Keyward's own (topic, durable): a no-op when it exists, and lets
    # this consumer start before the first Keyward node does.
    ch.exchange_declare(EXCHANGE, exchange_type="topic", durable=True)
    queue = ch.queue_declare("", exclusive=True, auto_delete=True).method.queue
    ch.queue_bind(queue, EXCHANGE, routing_key=args.pattern)
    ch.basic_qos(prefetch_count=32)
    print(f"bound {queue} to {EXCHANGE} with {args.pattern!r}", file=sys.stderr, flush=True)

    seen: OrderedDict[str, None] = OrderedDict()  # recent ids: a stand-in for a real inbox table
    deadline = time.monotonic() + args.timeout if args.expect else None
    while True:
        wait = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        if wait == 0.0:
            print(f"consume_events: no {args.expect} within {args.timeout:g} s", file=sys.stderr)
            return 1
        # consume() yields (None, None, None) after `inactivity_timeout` seconds of silence.
        for method, props, body in ch.consume(queue, inactivity_timeout=wait):
            if method is None:
                break
            try:
                envelope = json.loads(body)
            except ValueError:
                envelope = None
            if not isinstance(envelope, dict):
                print(f"consume_events: not an envelope, dropped: {body[:80]!r}", file=sys.stderr)
                ch.basic_reject(method.delivery_tag, requeue=False)
                continue
            event_id = props.message_id or envelope.get("id")
            if event_id in seen:  # a redelivery: already handled
                ch.basic_ack(method.delivery_tag)
                continue
            # Handle the event here (commit your own state), then ack.
            print(json.dumps(envelope, sort_keys=True), flush=True)
            seen[event_id] = None
            if len(seen) > 10_000:
                seen.popitem(last=False)
            ch.basic_ack(method.delivery_tag)
            if args.expect and envelope.get("type") == args.expect:
                return 0
            if deadline is not None and time.monotonic() >= deadline:
                break


if __name__ == "__main__":
    sys.exit(main())
