// better-auth's password hash alone (its hashPassword: scrypt N=16384, r=16, p=1, dkLen=64 on
// node:crypto, i.e. libuv's thread pool), as many at once as the pool runs, for SECONDS
// seconds. Prints "<hashes per second>".
import { hashPassword } from "better-auth/crypto";

const seconds = Number(process.argv[2] ?? 5);
const lanes = Number(process.env.UV_THREADPOOL_SIZE ?? 4);
const deadline = Date.now() + seconds * 1000;
const started = Date.now();
let done = 0;
async function lane() {
  while (Date.now() < deadline) {
    await hashPassword("bench passphrase 7 correct horse");
    done += 1;
  }
}
await Promise.all(Array.from({ length: lanes }, lane));
console.log((done / ((Date.now() - started) / 1000)).toFixed(2));
