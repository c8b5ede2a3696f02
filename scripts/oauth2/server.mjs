// A plain OAuth 2 server shaped like GitHub (npm oauth2-mock-server), for Keyward's social
// login tests, on loopback.
//   node server.mjs PORT    (or PORT in the environment)
// GitHub's paths and shapes:
//   GET  /login/oauth/authorize     no login form: the `login` query parameter (GitHub's own
//                                   account hint) names who signs in, `octocat` by default
//   POST /login/oauth/access_token  the code for a token; PKCE S256 checked (oauth2-mock-server
//                                   checks a code_verifier against the authorization's
//                                   code_challenge, and a code works once)
//   GET  /user, GET /user/emails    with `Authorization: Bearer <token>` (401 otherwise)
//   POST /applications/{client_id}/token  GitHub's check-token API: Basic auth as that client,
//                                   {access_token}; 200 for a token issued to that client, else 404
// and, for the generic `oauth2` kind, GET /userinfo: OpenID-style members (sub, email,
// email_verified, preferred_username, picture) plus `id` (a number) and `mail`.
// A login with `@` is its own primary address, otherwise `<login>@example.com`; a login starting
// with `unverified` has an unverified primary address, one starting with `noemail` none at all.
import { createServer } from 'node:http';
import { createHash, randomUUID } from 'node:crypto';
import { OAuth2Server } from 'oauth2-mock-server';

const port = Number(process.argv[2] || process.env.PORT);
if (!port) { console.error('usage: node server.mjs PORT'); process.exit(2); }
const base = `http://127.0.0.1:${port}`;

const mock = new OAuth2Server(undefined, undefined, {
  endpoints: { authorize: '/login/oauth/authorize', token: '/login/oauth/access_token' },
});
await mock.issuer.keys.generate('RS256');
mock.issuer.url = base;

const loginOfCode = new Map();
const loginOfToken = new Map();
const clientOfCode = new Map();
const clientOfToken = new Map();

mock.service.on('beforeAuthorizeRedirect', (redirect, req) => {
  const code = redirect.url.searchParams.get('code');
  if (code) {
    loginOfCode.set(code, String(req.query.login || 'octocat'));
    clientOfCode.set(code, String(req.query.client_id || ''));
  }
});
// The library's tokens are JWTs to the second: two issued in the same second for the same
// (default) subject would be the same string. A jti and the login as subject make each its own.
mock.service.on('beforeTokenSigning', (token, req) => {
  token.payload.jti = randomUUID();
  const login = loginOfCode.get(req.body.code);
  if (login) token.payload.sub = login;
});
mock.service.on('beforeResponse', (response, req) => {
  const login = loginOfCode.get(req.body.code);
  loginOfCode.delete(req.body.code);
  if (response.statusCode !== 200 || !login) return;
  loginOfToken.set(response.body.access_token, login);
  clientOfToken.set(response.body.access_token, clientOfCode.get(req.body.code));
  clientOfCode.delete(req.body.code);
  // GitHub's token answer: no ID token, refresh token or expiry for an OAuth app.
  response.body = {
    access_token: response.body.access_token,
    token_type: 'bearer',
    scope: (req.body.scope || 'read:user,user:email').replaceAll(' ', ','),
  };
});

const account = (login) => {
  const id = parseInt(createHash('sha256').update(login).digest('hex').slice(0, 8), 16);
  const name = login.split('@')[0];
  return {
    id,
    login: name,
    email: login.startsWith('noemail') ? null : (login.includes('@') ? login : `${login}@example.com`),
    verified: !login.startsWith('unverified'),
    avatar: `${base}/avatars/u/${id}`,
  };
};

const json = (res, status, body) => {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' }).end(JSON.stringify(body));
};

// The account of the request's bearer token, or a 401 already sent.
const bearer = (req, res) => {
  const m = /^(?:Bearer|token) (.+)$/i.exec(req.headers.authorization || '');
  const login = m && loginOfToken.get(m[1]);
  if (!login) {
    json(res, 401, { message: 'Bad credentials', documentation_url: 'https://docs.github.com/rest', status: '401' });
    return null;
  }
  return account(login);
};

const handler = mock.service.requestHandler;
createServer((req, res) => {
  res.on('finish', () => console.log(`${req.method} ${req.url.split('?')[0]} ${res.statusCode}`));
  const path = req.url.split('?')[0];
  if (req.method === 'GET' && path === '/user') {
    const a = bearer(req, res);
    if (a) {
      json(res, 200, {
        login: a.login, id: a.id, node_id: `U_${a.id}`, avatar_url: a.avatar,
        html_url: `https://github.example/${a.login}`, type: 'User', site_admin: false,
        name: a.login, email: null,
      });
    }
  } else if (req.method === 'GET' && path === '/user/emails') {
    const a = bearer(req, res);
    if (a) {
      json(res, 200, a.email === null ? [] : [
        { email: `${a.login}-old@example.org`, primary: false, verified: true, visibility: null },
        { email: a.email, primary: true, verified: a.verified, visibility: 'private' },
      ]);
    }
  } else if (req.method === 'POST' && /^\/applications\/[^/]+\/token$/.test(path)) {
    const client = decodeURIComponent(path.split('/')[2]);
    const basic = /^Basic (.+)$/i.exec(req.headers.authorization || '');
    const user = basic && Buffer.from(basic[1], 'base64').toString().split(':')[0];
    let raw = '';
    req.on('data', (c) => { raw += c; });
    req.on('end', () => {
      if (user !== client) return json(res, 401, { message: 'Requires authentication' });
      let token;
      try { token = JSON.parse(raw).access_token; } catch { return json(res, 422, { message: 'Invalid request' }); }
      const login = loginOfToken.get(token);
      if (!login || clientOfToken.get(token) !== client) return json(res, 404, { message: 'Not Found' });
      const a = account(login);
      return json(res, 200, { token, app: { client_id: client }, user: { login: a.login, id: a.id } });
    });
  } else if (req.method === 'GET' && path === '/userinfo') {
    const m = /^Bearer (.+)$/i.exec(req.headers.authorization || '');
    const login = m && loginOfToken.get(m[1]);
    if (!login) {
      json(res, 401, { error: 'invalid_token' });
    } else {
      const a = account(login);
      json(res, 200, {
        sub: login, id: a.id, email: a.email, mail: a.email, email_verified: a.verified,
        preferred_username: a.login, picture: a.avatar,
      });
    }
  } else {
    handler(req, res);
  }
}).listen(port, '127.0.0.1', () => console.log(`oauth2-mock-server ready on ${base}`));
