// better-auth as the benchmark peer: email + password on SQLite (better-sqlite3),
// served by Node's http server through better-auth's node handler.
//
// Environment:
//   BENCH_PEER_PORT          TCP port on 127.0.0.1 (default 3005; 0 = pick a free one,
//                            the chosen port is printed in the ready line)
//   BENCH_PEER_DB            SQLite file path (default ./peer.db); created and migrated on start
//   BENCH_PEER_SECRET        optional signing secret (default: 32 random bytes per start, so
//                            sessions do not survive a restart)
//   BENCH_PEER_JOURNAL_MODE  SQLite journal mode (default WAL, synchronous=NORMAL: the same
//                            pragmas Keyward's storage/src/store.rs sets)
//
// Prints exactly one line "ready http://127.0.0.1:PORT" on stdout once it accepts requests.
import http from "node:http";
import { randomBytes } from "node:crypto";
import Database from "better-sqlite3";
import { betterAuth } from "better-auth";
import { bearer } from "better-auth/plugins";
import { toNodeHandler } from "better-auth/node";
import { getMigrations } from "better-auth/db/migration";

const HOST = "127.0.0.1";
const port = Number.parseInt(process.env.BENCH_PEER_PORT ?? "3005", 10);
const dbPath = process.env.BENCH_PEER_DB || "./peer.db";
const journalMode = process.env.BENCH_PEER_JOURNAL_MODE || "WAL";
const secret = process.env.BENCH_PEER_SECRET || randomBytes(32).toString("base64");

if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`BENCH_PEER_PORT is not a port: ${process.env.BENCH_PEER_PORT}`);
  process.exit(2);
}

const db = new Database(dbPath);
db.pragma(`journal_mode = ${journalMode}`);
db.pragma("synchronous = NORMAL");
db.pragma("foreign_keys = ON");

function makeAuth(baseURL) {
  return betterAuth({
    baseURL,
    secret,
    database: db,
    emailAndPassword: {
      enabled: true,
      // Sign-in must work right after sign-up.
      requireEmailVerification: false,
      // Default: sign-up creates a session and returns its token (kept explicit).
      autoSignIn: true,
      // password.hash / password.verify deliberately NOT set: better-auth's default
      // scrypt (N=16384, r=16, p=1, dkLen=64) is what the benchmark measures.
    },
    // The built-in limiter (on by default when NODE_ENV=production: 100 req / 10 s per IP,
    // stricter special rules for /sign-in and /sign-up) would throttle a load generator
    // that sends everything from 127.0.0.1. Off, so the benchmark measures the auth work.
    rateLimit: { enabled: false },
    telemetry: { enabled: false },
    plugins: [
      // Lets the session check use "Authorization: Bearer <token>" instead of a cookie.
      bearer(),
    ],
    logger: { level: "error" },
  });
}

// baseURL is only known after listen() when BENCH_PEER_PORT=0, so bind first and
// answer 503 until the auth instance and schema are ready (nobody is told before then).
let handler = null;
const server = http.createServer((req, res) => {
  if (!handler) {
    res.writeHead(503, { "content-type": "text/plain" }).end("starting\n");
    return;
  }
  if (req.url && req.url.startsWith("/api/auth")) {
    handler(req, res);
    return;
  }
  res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
});

server.listen(port, HOST, async () => {
  try {
    const actualPort = server.address().port;
    const baseURL = `http://${HOST}:${actualPort}`;
    const auth = makeAuth(baseURL);
    const { toBeCreated, toBeAdded, runMigrations } = await getMigrations(auth.options);
    if (toBeCreated.length || toBeAdded.length) {
      await runMigrations();
      console.error(
        `migrated ${dbPath}: created [${toBeCreated.map((t) => t.table).join(", ")}]` +
          (toBeAdded.length ? `, added columns to [${toBeAdded.map((t) => t.table).join(", ")}]` : ""),
      );
    }
    handler = toNodeHandler(auth);
    process.stdout.write(`ready ${baseURL}\n`);
  } catch (err) {
    console.error("startup failed:", err);
    process.exit(1);
  }
});

server.on("error", (err) => {
  console.error("server error:", err.message);
  process.exit(1);
});

function shutdown(signal) {
  server.close(() => {
    try {
      db.close();
    } catch {}
    process.exit(0);
  });
  server.closeAllConnections?.();
  setTimeout(() => process.exit(0), 2000).unref();
  void signal;
}
process.on("SIGTERM", () => shutdown("SIGTERM"));
process.on("SIGINT", () => shutdown("SIGINT"));
