// A real OpenID Connect provider for the server's OIDC tests (npm oauth2-mock-server): RS256
// keys, discovery, /authorize (which answers at once with a code, as after a login), /token
// with PKCE checks, /jwks. The claims of the next ID tokens come from the JSON file named by
// OIDC_CLAIMS_FILE, read at every signing, so one provider serves a test's several logins.
//
// With OIDC_MOCK_GITHUB=1 it answers as GitHub does instead (OAuth2 without OIDC): the same
// server under GitHub's paths (/login/oauth/authorize, /login/oauth/access_token, with the same
// PKCE checks) and GitHub's API call for the account's addresses (GET /user/emails, which needs
// the access token it issued), from the claims file's `github_emails`.
//
// Prints {"issuer": URL} on stdout once it listens; stops on SIGTERM or when stdin closes.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { OAuth2Issuer, OAuth2Service } from 'oauth2-mock-server';

const claims = () => {
  const file = process.env.OIDC_CLAIMS_FILE;
  return file ? JSON.parse(readFileSync(file, 'utf8')) : {};
};
const issuer = new OAuth2Issuer();
await issuer.keys.generate('RS256');
const service = new OAuth2Service(issuer);
const issued = new Set();
service.on('beforeTokenSigning', (token) => {
  const { github_emails: _, ...rest } = claims();
  Object.assign(token.payload, rest);
});
service.on('beforeResponse', (response) => {
  if (response.body && response.body.access_token) issued.add(response.body.access_token);
});
const github = process.env.OIDC_MOCK_GITHUB === '1';
const server = createServer((req, res) => {
  if (github) {
    if (req.url.startsWith('/login/oauth/authorize')) {
      req.url = req.url.replace('/login/oauth/authorize', '/authorize');
    } else if (req.url.startsWith('/login/oauth/access_token')) {
      req.url = '/token';
    } else if (req.url === '/user/emails' && req.method === 'GET') {
      const auth = req.headers.authorization || '';
      const ok = auth.startsWith('Bearer ') && issued.has(auth.slice(7))
        && (req.headers['user-agent'] || '') !== '';
      res.writeHead(ok ? 200 : 401, { 'content-type': 'application/json' });
      res.end(JSON.stringify(ok ? (claims().github_emails || []) : { message: 'Bad credentials' }));
      return;
    } else {
      res.writeHead(404);
      res.end();
      return;
    }
  }
  service.requestHandler(req, res);
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const url = `http://localhost:${server.address().port}`;
issuer.url = url;
process.stdout.write(JSON.stringify({ issuer: url }) + '\n');
const stop = () => { server.close(); process.exit(0); };
process.on('SIGTERM', stop);
process.stdin.on('end', stop);
process.stdin.resume();
