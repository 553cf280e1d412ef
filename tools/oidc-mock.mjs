// A real OpenID Connect provider for the server's OIDC tests (npm oauth2-mock-server): RS256
// keys, discovery, /authorize (which answers at once with a code, as after a login), /token
// with PKCE checks, /jwks. The claims of the next ID tokens come from the JSON file named by
// OIDC_CLAIMS_FILE, read at every signing, so one provider serves a test's several logins.
// Prints {"issuer": URL} on stdout once it listens; stops on SIGTERM or when stdin closes.
import { readFileSync } from 'node:fs';
import { OAuth2Server } from 'oauth2-mock-server';

const server = new OAuth2Server();
await server.issuer.keys.generate('RS256');
server.service.on('beforeTokenSigning', (token) => {
  const file = process.env.OIDC_CLAIMS_FILE;
  if (file) Object.assign(token.payload, JSON.parse(readFileSync(file, 'utf8')));
});
await server.start(0, '127.0.0.1');
process.stdout.write(JSON.stringify({ issuer: server.issuer.url }) + '\n');
const stop = async () => { await server.stop(); process.exit(0); };
process.on('SIGTERM', stop);
process.stdin.on('end', stop);
process.stdin.resume();
