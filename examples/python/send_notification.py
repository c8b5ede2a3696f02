#!/usr/bin/env python3
"""Ask Keyward to notify users, by publishing to RabbitMQ with pika.

    python send_notification.py --to USER_ID [--to USER_ID …] --idempotency-key KEY
        [--template generic] [--category general] [--var title=… --var body=…]
        [--amqp-url URL]

Publishes the same JSON as POST /v1/notifications to the `keyward.notify` exchange (routing
key `send`), persistent, with publisher confirms and `mandatory`, so it exits 0 only once the
broker has the request in `keyward.notify.requests`. Keyward consumes it, sends it as the
built-in client `amqp`, and drops a repeat with the same idempotency key; a request that can
never be sent goes to `keyward.dead` with the reason in the `x-keyward-reason` header.

--amqp-url falls back to AMQP_URL, then amqp://guest:guest@127.0.0.1:5672/%2f.
"""

import argparse
import json
import os
import sys
import uuid

import pika

EXCHANGE = "keyward.notify"


def main() -> int:
    p = argparse.ArgumentParser(description="Send a notification through Keyward's AMQP intake.")
    p.add_argument("--amqp-url",
                   default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"))
    p.add_argument("--to", action="append", required=True, metavar="USER_ID")
    p.add_argument("--template", default="generic")
    p.add_argument("--category", default="general")
    p.add_argument("--var", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--idempotency-key", required=True)
    args = p.parse_args()

    variables = {}
    for v in args.var:
        name, sep, value = v.partition("=")
        if not sep:
            print(f"send_notification: --var {v!r} is not NAME=VALUE", file=sys.stderr)
            return 2
        variables[name] = value
    body = json.dumps({
        "to": args.to,
        "template": args.template,
        "variables": variables,
        "category": args.category,
        "idempotency_key": args.idempotency_key,
    }).encode()

    try:
        conn = pika.BlockingConnection(pika.URLParameters(args.amqp_url))
    except pika.exceptions.AMQPError as e:
        print(f"send_notification: cannot connect to RabbitMQ: {e!r}", file=sys.stderr)
        return 1
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish(
            exchange=EXCHANGE,
            routing_key="send",
            body=body,
            properties=pika.BasicProperties(
                content_type="application/json",
                delivery_mode=pika.DeliveryMode.Persistent,
                message_id=str(uuid.uuid4()),
            ),
            mandatory=True,
        )
    except pika.exceptions.UnroutableError:
        print("send_notification: no queue took it (is Keyward running on this broker?)",
              file=sys.stderr)
        return 1
    except pika.exceptions.AMQPError as e:
        print(f"send_notification: {e!r}", file=sys.stderr)
        return 1
    finally:
        if conn.is_open:
            conn.close()
    print(f"published {args.idempotency_key} for {len(args.to)} user(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
