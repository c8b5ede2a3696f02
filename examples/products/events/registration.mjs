#!/usr/bin/env node
// The event site's Registration service: a product service behind NGINX forward-auth that lets
// Keyward be its Auth, User, Roles and Notification services (docs/products/events.md).
//
//   node registration.mjs --keyward-url http://127.0.0.1:8080 \
//       --amqp-url amqp://guest:guest@127.0.0.1:5672/%2f [--listen 127.0.0.1:3000]
//
// It never sees a request NGINX did not let through: nginx.conf beside this file asks Keyward's
// GET /v1/auth/verify?permission=… before each route (events:read, events:write,
// registrations:write, registrations:read) and passes the user's id and roles in
// X-Keyward-User-Id and X-Keyward-Roles, which clients cannot forge. So this service:
// - checks no token and no permission itself (it trusts the headers only because it listens on
//   loopback, reachable by NGINX alone);
// - reads the attendee's profile from Keyward (GET /v1/users/me with the attendee's own bearer,
//   which NGINX passes on) for the name and company on the badge;
// - publishes its notification requests to the `keyward.notify` exchange (routing key `send`)
//   over AMQP, with publisher confirms and `mandatory`: the attendee's registration-confirmed
//   mail and in-app item, and an in-app note to the organizer. Each carries an idempotency key
//   made of the registration, so a republish is sent once.
//
// What it keeps to itself: events and registrations (in memory here; a real service keeps
// them in its own database, and writes the notification requests to an outbox in the same
// transaction).
//
// HTTP API (JSON), as NGINX exposes it:
//   GET  /events                          events:read          the events
//   POST /events                          events:write         {title, starts_at, capacity}
//   POST /events/{id}/registrations       registrations:write  register the caller
//   GET  /events/{id}/registrations       registrations:read   the attendees, for the organizer
//   GET  /health                          (no NGINX route: for the local supervisor)
//
// Prints `event registration listening on http://HOST:PORT` once it serves and is connected.
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import amqp from 'amqplib';

const NOTIFY_EXCHANGE = 'keyward.notify';

function usage(message) {
  console.error(`registration: ${message}`);
  console.error('usage: registration.mjs --keyward-url URL --amqp-url URL [--listen HOST:PORT]');
  process.exit(2);
}

let values;
try {
  ({ values } = parseArgs({
    options: {
      'keyward-url': { type: 'string' },
      'amqp-url': { type: 'string' },
      listen: { type: 'string', default: '127.0.0.1:3000' },
    },
  }));
} catch (e) {
  usage(e.message);
}
const keywardUrl = (values['keyward-url'] ?? process.env.KEYWARD_URL ?? '').replace(/\/+$/, '');
const amqpUrl = values['amqp-url'] ?? process.env.AMQP_URL;
if (!keywardUrl) usage('--keyward-url (or KEYWARD_URL) is required');
if (!amqpUrl) usage('--amqp-url (or AMQP_URL) is required');
const [host, port] = [values.listen.replace(/:\d+$/, ''), Number(values.listen.split(':').pop())];

const log = (msg) => console.error(`events: ${msg}`);

class Refused extends Error {
  constructor(status, code, detail) {
    super(detail);
    Object.assign(this, { status, code, detail });
  }
}

// --- Publishing to keyward.notify ----------------------------------------------------------

/** One confirm channel, reopened after a failure. */
class NotifyPublisher {
  constructor(url) {
    this.url = url;
    this.opening = null;
    this.returned = new Set();
  }

  /** The channel, connecting first if there is none (one attempt at a time). */
  open() {
    this.opening ??= this.connect().catch((e) => {
      this.opening = null;
      throw e;
    });
    return this.opening;
  }

  async connect() {
    const conn = await amqp.connect(this.url);
    const forget = () => {
      this.opening = null;
    };
    conn.on('error', (e) => log(`RabbitMQ connection: ${e.message}`));
    conn.on('close', forget);
    const ch = await conn.createConfirmChannel();
    ch.on('error', (e) => log(`RabbitMQ channel: ${e.message}`));
    ch.on('close', forget);
    // With `mandatory`, a message no queue takes comes back here before its confirm.
    ch.on('return', (msg) => this.returned.add(msg.properties.messageId));
    this.conn = conn;
    return ch;
  }

  /** Resolves once RabbitMQ holds the request in Keyward's queue; rejects otherwise. */
  async send(request) {
    const ch = await this.open();
    const messageId = randomUUID();
    await new Promise((resolve, reject) => {
      ch.publish(
        NOTIFY_EXCHANGE,
        'send',
        Buffer.from(JSON.stringify(request)),
        { persistent: true, contentType: 'application/json', messageId, mandatory: true },
        (err) => (err ? reject(new Error('RabbitMQ refused the message (nack)')) : resolve()),
      );
    });
    if (this.returned.delete(messageId)) {
      throw new Error('no queue took the request: is Keyward running on this broker?');
    }
  }

  async close() {
    try {
      await this.conn?.close();
    } catch {
      // closing anyway
    }
  }
}

// --- Keyward's profile API, on the attendee's behalf ----------------------------------------

async function profileOf(authorization) {
  const r = await fetch(`${keywardUrl}/v1/users/me`, {
    headers: { authorization, accept: 'application/json' },
    signal: AbortSignal.timeout(5000),
  });
  if (!r.ok) throw new Refused(502, 'profile_unavailable', `Keyward answered ${r.status} for the profile`);
  return r.json();
}

// --- The registration rules ---------------------------------------------------------------

const events = new Map(); // id → {id, title, starts_at, capacity, organizer_id, registrations: Map}

function createEvent(userId, body) {
  const { title, starts_at: startsAt, capacity } = body;
  if (typeof title !== 'string' || title.trim().length < 1 || title.length > 200) {
    throw new Refused(400, 'invalid_title', 'title is 1-200 characters');
  }
  if (typeof startsAt !== 'string' || Number.isNaN(Date.parse(startsAt))) {
    throw new Refused(400, 'invalid_time', 'starts_at is an RFC 3339 time');
  }
  if (!Number.isInteger(capacity) || capacity < 1 || capacity > 100000) {
    throw new Refused(400, 'invalid_capacity', 'capacity is a whole number, 1-100000');
  }
  const event = {
    id: randomUUID(),
    title: title.trim(),
    starts_at: new Date(startsAt).toISOString(),
    capacity,
    organizer_id: userId,
    registrations: new Map(),
  };
  events.set(event.id, event);
  log(`event ${event.id} "${event.title}" by ${userId}`);
  return view(event);
}

const view = (e) => ({
  id: e.id,
  title: e.title,
  starts_at: e.starts_at,
  capacity: e.capacity,
  registered: e.registrations.size,
  organizer_id: e.organizer_id,
});

function eventOr404(id) {
  const e = events.get(id);
  if (!e) throw new Refused(404, 'event_not_found', 'no event has this id');
  return e;
}

async function register(publisher, userId, authorization, eventId) {
  const event = eventOr404(eventId);
  if (event.registrations.has(userId)) {
    throw new Refused(409, 'already_registered', 'you are registered for this event already');
  }
  if (event.registrations.size >= event.capacity) {
    throw new Refused(409, 'event_full', 'every place is taken');
  }
  const me = await profileOf(authorization);
  const registration = {
    id: randomUUID(),
    event_id: event.id,
    user_id: userId,
    attendee_name: me.display_name || me.username || me.email,
    company: me.attributes?.company ?? null,
    registered_at: new Date().toISOString(),
  };
  // Taken before the awaits below, so that two requests cannot both have the last place.
  event.registrations.set(userId, registration);
  try {
    await publisher.send({
      to: [userId],
      template: 'registration_confirmed',
      category: 'registrations',
      variables: {
        attendee_name: registration.attendee_name,
        event_title: event.title,
        starts_at: event.starts_at,
        registration_id: registration.id,
      },
      idempotency_key: `registration-${registration.id}-confirmed`,
    });
    await publisher.send({
      to: [event.organizer_id],
      template: 'registration_received',
      category: 'registrations',
      channels: ['in_app'],
      variables: {
        attendee_name: registration.attendee_name,
        event_title: event.title,
        registered: String(event.registrations.size),
        capacity: String(event.capacity),
      },
      idempotency_key: `registration-${registration.id}-organizer`,
    });
  } catch (e) {
    event.registrations.delete(userId);
    throw new Refused(503, 'notifications_unavailable', `registration not taken: ${e.message}`);
  }
  log(`registration ${registration.id}: ${registration.attendee_name} for "${event.title}"`);
  return registration;
}

function registrations(userId, eventId) {
  const event = eventOr404(eventId);
  // NGINX let only holders of registrations:read through; the list is the organizer's own.
  if (event.organizer_id !== userId) {
    throw new Refused(403, 'forbidden', 'only the event\'s organizer sees its registrations');
  }
  return { event: view(event), items: [...event.registrations.values()] };
}

// --- HTTP -----------------------------------------------------------------------------------

async function readJson(req) {
  let size = 0;
  const chunks = [];
  for await (const c of req) {
    size += c.length;
    if (size > 64 * 1024) throw new Refused(413, 'too_large', 'the body is larger than 64 KiB');
    chunks.push(c);
  }
  try {
    const doc = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
    if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new Error('not an object');
    return doc;
  } catch {
    throw new Refused(400, 'invalid_json', 'the body is a JSON object');
  }
}

async function route(publisher, req) {
  const path = new URL(req.url, 'http://x').pathname;
  if (req.method === 'GET' && path === '/health') return [200, { status: 'ok' }];
  // Set by NGINX from Keyward's answer; a request without it did not come through NGINX.
  const userId = req.headers['x-keyward-user-id'];
  if (!userId) throw new Refused(401, 'unauthenticated', 'requests come through NGINX forward-auth');
  if (path === '/events' && req.method === 'GET') return [200, { items: [...events.values()].map(view) }];
  if (path === '/events' && req.method === 'POST') return [201, createEvent(userId, await readJson(req))];
  const m = path.match(/^\/events\/([^/]+)\/registrations$/);
  if (m && req.method === 'POST') {
    return [201, await register(publisher, userId, req.headers.authorization, m[1])];
  }
  if (m && req.method === 'GET') return [200, registrations(userId, m[1])];
  throw new Refused(404, 'not_found', `no route ${req.method} ${path}`);
}

const publisher = new NotifyPublisher(amqpUrl);
await publisher.open(); // fail at start, not at the first registration, if RabbitMQ is unreachable

const server = http.createServer(async (req, res) => {
  let status;
  let body;
  try {
    [status, body] = await route(publisher, req);
  } catch (e) {
    if (e instanceof Refused) {
      [status, body] = [e.status, { status: e.status, code: e.code, detail: e.detail }];
    } else {
      log(`bug: ${e.stack}`);
      [status, body] = [500, { status: 500, code: 'internal', detail: 'see the log' }];
    }
  }
  log(`${req.method} ${req.url} -> ${status}`);
  const raw = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': status >= 400 ? 'application/problem+json' : 'application/json',
    'content-length': Buffer.byteLength(raw),
  });
  res.end(raw);
});

server.listen(port, host, () => {
  console.log(`event registration listening on http://${host}:${server.address().port}`);
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, async () => {
    server.close();
    await publisher.close();
    process.exit(0);
  });
}
