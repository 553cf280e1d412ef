#!/usr/bin/env node
// End-to-end smoke test of the devnet tooling: starts .dexlab/bin/anvil on port 18545, deploys the
// artifacts written by tools/compile.js and trades through DexlabRouter on Uniswap V2, Uniswap V3 and
// PancakeSwap V3 (the latter through our PancakeV3PoolDeployer + CodeHolder). Raw JSON-RPC via Node's
// global fetch and a tiny hand-written ABI encoder; keccak comes from js-sha3, which is solc's own
// (pinned, in tools/package-lock.json) dependency. Run `bash scripts/setup.sh` first.
'use strict';

const fs = require('fs');
const path = require('path');
const { spawn } = require('child_process');
const { keccak256: keccakHex } = require(require.resolve('js-sha3', { paths: [__dirname] }));

const ROOT = path.resolve(__dirname, '..');
const ARTIFACTS = path.join(ROOT, '.dexlab', 'artifacts');
const ANVIL = path.join(ROOT, '.dexlab', 'bin', 'anvil');
const PORT = Number(process.env.DEXLAB_SMOKE_PORT || 18545);
const RPC = `http://127.0.0.1:${PORT}`;

// Canonical init-code hashes (what the periphery libraries hard-code); the npm artifacts must match them.
const INIT_CODE_HASH = {
  UniswapV2Pair: '0x96e8ac4277198ff8b6f785478aa9a39f403cb768dd02cbee326c3e7da348845f',
  UniswapV3Pool: '0xe34f199b19b2b4f47f68442619d555527d244f78a3297ea89325f843f87b8b54',
  PancakeV3Pool: '0x6ce8eb472fa82df5469c6ab6d485f17c3ad13c8cd7af59b3d4a8026c5ce0f7e2',
};

// ------------------------------------------------------------------ tiny helpers

let passed = 0;
let failed = 0;
function check(cond, what) {
  if (cond) {
    passed++;
    console.log(`  ok    ${what}`);
  } else {
    failed++;
    console.log(`  FAIL  ${what}`);
  }
  return cond;
}

const strip = (h) => (h.startsWith('0x') ? h.slice(2) : h);
const keccak = (hex) => '0x' + keccakHex(Buffer.from(strip(hex), 'hex'));
const keccakText = (s) => '0x' + keccakHex(s);
const hexSize = (h) => strip(h).length / 2;
const lower = (a) => a.toLowerCase();
const U256 = 1n << 256n;

function word(v) {
  // v: BigInt in [-(2^255), 2^256)
  const x = v < 0n ? v + U256 : v;
  if (x < 0n || x >= U256) throw new Error(`value out of range: ${v}`);
  return x.toString(16).padStart(64, '0');
}

function encodeStatic(type, v) {
  if (type === 'address') {
    if (!/^0x[0-9a-fA-F]{40}$/.test(v)) throw new Error(`bad address ${v}`);
    return strip(v).toLowerCase().padStart(64, '0');
  }
  if (type === 'bool') return word(v ? 1n : 0n);
  const m = /^(u?)int(\d*)$/.exec(type);
  if (m) {
    const bits = BigInt(m[2] || 256);
    const b = BigInt(v);
    if (m[1] === 'u' ? b < 0n || b >= 1n << bits : b < -(1n << (bits - 1n)) || b >= 1n << (bits - 1n)) {
      throw new Error(`${v} does not fit ${type}`);
    }
    return word(b);
  }
  throw new Error(`unsupported ABI type ${type}`);
}

/** ABI-encodes values for a list of (non-tuple, non-array) types; bytes/string are the only dynamic ones. */
function encodeArgs(types, values) {
  if (types.length !== values.length) throw new Error(`expected ${types.length} args, got ${values.length}`);
  const heads = [];
  const tails = [];
  let tailSize = 32 * types.length;
  types.forEach((t, i) => {
    if (t === 'bytes' || t === 'string') {
      const data = t === 'string' ? Buffer.from(values[i], 'utf8') : Buffer.from(strip(values[i]), 'hex');
      const padded = data.toString('hex').padEnd(Math.ceil(data.length / 32) * 64, '0');
      const tail = word(BigInt(data.length)) + padded;
      heads.push(word(BigInt(tailSize)));
      tails.push(tail);
      tailSize += tail.length / 2;
    } else {
      heads.push(encodeStatic(t, values[i]));
    }
  });
  return heads.join('') + tails.join('');
}

function decodeWord(type, hex) {
  const x = BigInt('0x' + hex);
  if (type === 'address') return '0x' + hex.slice(24);
  if (type === 'bool') return x !== 0n;
  const m = /^(u?)int(\d*)$/.exec(type);
  if (m) return m[1] === 'u' ? x : x >= 1n << 255n ? x - U256 : x;
  return '0x' + hex; // bytes32 and friends
}

/** Decodes static return values only (all that the smoke needs). */
function decodeStatic(types, data) {
  const h = strip(data);
  return types.map((t, i) => decodeWord(t, h.slice(64 * i, 64 * (i + 1))));
}

const signature = (item) => `${item.name}(${item.inputs.map((i) => i.type).join(',')})`;

function create2Address(deployer, salt, initCodeHash) {
  return '0x' + keccak('ff' + strip(deployer) + strip(salt) + strip(initCodeHash)).slice(-40);
}

// ------------------------------------------------------------------ JSON-RPC

let rpcId = 0;
async function rpc(method, params = []) {
  const res = await fetch(RPC, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: ++rpcId, method, params }),
  });
  const body = await res.json();
  if (body.error) {
    const e = new Error(`${method}: ${body.error.message}${body.error.data ? ` (${JSON.stringify(body.error.data)})` : ''}`);
    e.rpc = body.error;
    throw e;
  }
  return body.result;
}

let FROM;

async function sendTx(tx, what) {
  const hash = await rpc('eth_sendTransaction', [{ from: FROM, ...tx }]);
  for (let i = 0; i < 100; i++) {
    const r = await rpc('eth_getTransactionReceipt', [hash]);
    if (r) {
      if (r.status !== '0x1') throw new Error(`${what}: transaction ${hash} reverted`);
      return r;
    }
    await new Promise((ok) => setTimeout(ok, 50));
  }
  throw new Error(`${what}: no receipt for ${hash}`);
}

// ------------------------------------------------------------------ contracts

function artifact(name) {
  return JSON.parse(fs.readFileSync(path.join(ARTIFACTS, `${name}.json`), 'utf8'));
}

class Contract {
  constructor(art, address) {
    this.art = art;
    this.address = lower(address);
  }
  fn(name) {
    const f = this.art.abi.find((x) => x.type === 'function' && x.name === name);
    if (!f) throw new Error(`${this.art.contractName} has no function ${name}`);
    return f;
  }
  calldata(name, args) {
    const f = this.fn(name);
    return keccakText(signature(f)).slice(0, 10) + encodeArgs(f.inputs.map((i) => i.type), args);
  }
  async send(name, ...args) {
    return sendTx({ to: this.address, data: this.calldata(name, args) }, `${this.art.contractName}.${name}`);
  }
  async call(name, ...args) {
    const f = this.fn(name);
    const out = await rpc('eth_call', [{ from: FROM, to: this.address, data: this.calldata(name, args) }, 'latest']);
    return decodeStatic(f.outputs.map((o) => o.type), out);
  }
  /** true if the call reverts (checked with eth_call, no state change) */
  async reverts(name, ...args) {
    try {
      await this.call(name, ...args);
      return false;
    } catch (e) {
      if (!e.rpc) throw e;
      if (process.env.SMOKE_DEBUG) console.log("    revert:", e.message);
      return true;
    }
  }
  eventTopic(name) {
    const ev = this.art.abi.find((x) => x.type === 'event' && x.name === name);
    if (!ev) throw new Error(`${this.art.contractName} has no event ${name}`);
    return keccakText(signature(ev));
  }
}

async function deploy(name, ...args) {
  const art = artifact(name);
  const ctor = art.abi.find((x) => x.type === 'constructor');
  const data = art.bytecode + encodeArgs(ctor ? ctor.inputs.map((i) => i.type) : [], args);
  const r = await sendTx({ data }, `deploy ${name}`);
  return new Contract(art, r.contractAddress);
}

const at = (name, address) => new Contract(artifact(name), address);

async function hasCode(address) {
  const code = await rpc('eth_getCode', [address, 'latest']);
  return hexSize(code) > 0;
}

function logsOf(receipt, contract, event) {
  const topic = contract.eventTopic(event);
  return receipt.logs.filter((l) => lower(l.address) === contract.address && l.topics[0] === topic);
}

// ------------------------------------------------------------------ anvil

async function startAnvil() {
  if (!fs.existsSync(ANVIL)) throw new Error(`${ANVIL} missing: run bash scripts/setup.sh`);
  // No code-size flag: every runtime code stays under EIP-170's 24576 bytes (largest: UniswapV3Factory 24535,
  // CodeHolder(PancakeV3Pool creation code) 23566), and every initcode under EIP-3860's 49152.
  const child = spawn(ANVIL, ['--port', String(PORT), '--silent'], { stdio: ['ignore', 'inherit', 'inherit'] });
  let exited = null;
  child.on('exit', (code, sig) => (exited = sig || code));
  for (let i = 0; i < 200; i++) {
    if (exited !== null) throw new Error(`anvil exited early (${exited}); is port ${PORT} free?`);
    try {
      await rpc('eth_chainId');
      return child;
    } catch (_) {
      await new Promise((ok) => setTimeout(ok, 50));
    }
  }
  child.kill('SIGKILL');
  throw new Error('anvil did not answer within 10 s');
}

// ------------------------------------------------------------------ the smoke

async function v3Scenario(label, pool, router, tokens, expectedFee) {
  console.log(`${label}:`);
  const Q96 = 1n << 96n;
  check((await pool.call('fee'))[0] === BigInt(expectedFee), `${label} pool fee ${expectedFee}`);
  const [t0] = await pool.call('token0');
  const [t1] = await pool.call('token1');
  check(t0 === tokens[0].address && t1 === tokens[1].address, `${label} pool tokens sorted and correct`);

  await pool.send('initialize', Q96);
  const [sqrtP] = await pool.call('slot0');
  check(sqrtP === Q96, `${label} initialized at sqrtPriceX96 = 2^96`);

  const liq = 10n ** 21n;
  const mint = await router.send('v3Mint', pool.address, -1000, 1000, liq);
  check(mint.status === '0x1' && logsOf(mint, pool, 'Mint').length === 1, `${label} v3Mint succeeded with a Mint log`);
  const [poolLiq] = await pool.call('liquidity');
  check(poolLiq === liq, `${label} pool liquidity = ${liq}`);

  const [bal0Before] = await tokens[0].call('balanceOf', FROM);
  const [bal1Before] = await tokens[1].call('balanceOf', FROM);
  const amountIn = 10n ** 18n;
  const swap = await router.send('v3Swap', pool.address, true, amountIn, 0);
  const swaps = logsOf(swap, pool, 'Swap');
  check(swap.status === '0x1' && swaps.length === 1, `${label} v3Swap succeeded with a Swap log`);
  const [a0, a1] = decodeStatic(['int256', 'int256'], swaps[0].data);
  const [bal0After] = await tokens[0].call('balanceOf', FROM);
  const [bal1After] = await tokens[1].call('balanceOf', FROM);
  check(
    a0 === amountIn && a1 < 0n && bal0Before - bal0After === a0 && bal1After - bal1Before === -a1,
    `${label} swap paid ${a0} token0, received ${-a1} token1`,
  );
  check(
    (await router.reverts('uniswapV3SwapCallback', 1, 0, '0x' + encodeStatic('address', FROM))) &&
      (await router.reverts('pancakeV3MintCallback', 1, 0, '0x' + encodeStatic('address', FROM))),
    `${label} router rejects callbacks outside v3Swap/v3Mint`,
  );
}

async function main() {
  const anvil = await startAnvil();
  const stop = () => {
    if (anvil.exitCode === null && anvil.signalCode === null) anvil.kill('SIGTERM');
  };
  process.on('exit', stop);
  try {
    console.log(`anvil ${await rpc('web3_clientVersion')} on ${RPC}`);
    [FROM] = (await rpc('eth_accounts')).map(lower);

    // Tokens (sorted so that index 0 is token0 everywhere) and the router.
    let tokens = [await deploy('TestToken', 'Token A', 'TKA', 18), await deploy('TestToken', 'Token B', 'TKB', 6)];
    tokens.sort((a, b) => (BigInt(a.address) < BigInt(b.address) ? -1 : 1));
    const router = await deploy('DexlabRouter');
    const MAX = U256 - 1n;
    for (const t of tokens) {
      await t.send('mint', FROM, 10n ** 30n);
      await t.send('approve', router.address, MAX);
    }
    console.log('tokens + router:');
    check((await tokens[0].call('balanceOf', FROM))[0] === 10n ** 30n, 'TestToken.mint credits the recipient');

    // Uniswap V3
    console.log('UniswapV3 deploy:');
    const uniFactory = await deploy('UniswapV3Factory');
    await uniFactory.send('createPool', tokens[0].address, tokens[1].address, 500);
    const [uniPoolAddr] = await uniFactory.call('getPool', tokens[0].address, tokens[1].address, 500);
    check(BigInt(uniPoolAddr) !== 0n && (await hasCode(uniPoolAddr)), `UniswapV3Factory.createPool(500) -> ${uniPoolAddr}`);
    const poolSalt = keccak(encodeArgs(['address', 'address', 'uint24'], [tokens[0].address, tokens[1].address, 500]));
    check(
      keccak(artifact('UniswapV3Pool').bytecode) === INIT_CODE_HASH.UniswapV3Pool &&
        create2Address(uniFactory.address, poolSalt, INIT_CODE_HASH.UniswapV3Pool) === uniPoolAddr,
      'UniswapV3 pool address = CREATE2(factory, keccak(abi.encode(t0,t1,fee)), 0xe34f199b...)',
    );

    // PancakeSwap V3: holder(pool creation code) -> deployer(holder) -> factory(deployer) -> setFactoryAddress
    console.log('PancakeV3 deploy:');
    const poolCode = artifact('PancakeV3Pool').bytecode;
    const holder = await deploy('CodeHolder', poolCode);
    check(
      (await rpc('eth_getCode', [holder.address, 'latest'])) === poolCode,
      `CodeHolder runtime code = PancakeV3Pool creation code (${hexSize(poolCode)} bytes)`,
    );
    const deployer = await deploy('PancakeV3PoolDeployer', holder.address);
    const cakeFactory = await deploy('PancakeV3Factory', deployer.address);
    await deployer.send('setFactoryAddress', cakeFactory.address);
    check(
      (await deployer.reverts('setFactoryAddress', FROM)) &&
        (await deployer.reverts('deploy', FROM, tokens[0].address, tokens[1].address, 500, 10)),
      'deployer: setFactoryAddress only once, deploy only by the factory',
    );
    await cakeFactory.send('createPool', tokens[1].address, tokens[0].address, 500);
    const [cakePoolAddr] = await cakeFactory.call('getPool', tokens[0].address, tokens[1].address, 500);
    check(BigInt(cakePoolAddr) !== 0n && (await hasCode(cakePoolAddr)), `PancakeV3Factory.createPool(500) -> ${cakePoolAddr}`);
    const cakeInitHash = keccak(poolCode);
    check(cakeInitHash === INIT_CODE_HASH.PancakeV3Pool, `PancakeV3Pool init code hash = ${cakeInitHash}`);
    const expected = create2Address(deployer.address, poolSalt, cakeInitHash);
    check(expected === cakePoolAddr, `Pancake pool address = CREATE2(deployer, keccak(abi.encode(t0,t1,fee)), keccak(pool code)) = ${expected}`);
    const cakePool = at('PancakeV3Pool', cakePoolAddr);
    const [pFactory] = await cakePool.call('factory');
    const [pSpacing] = await cakePool.call('tickSpacing');
    const [params] = await deployer.call('parameters');
    check(pFactory === cakeFactory.address && pSpacing === 10n && BigInt(params) === 0n, 'Pancake pool got factory + tickSpacing 10; deployer parameters cleared');

    await v3Scenario('UniswapV3', at('UniswapV3Pool', uniPoolAddr), router, tokens, 500);
    await v3Scenario('PancakeV3', cakePool, router, tokens, 500);

    // Uniswap V2
    console.log('UniswapV2:');
    const v2Factory = await deploy('UniswapV2Factory', FROM);
    await v2Factory.send('createPair', tokens[0].address, tokens[1].address);
    const [pairAddr] = await v2Factory.call('getPair', tokens[0].address, tokens[1].address);
    const pair = at('UniswapV2Pair', pairAddr);
    check(
      (await hasCode(pairAddr)) &&
        keccak(artifact('UniswapV2Pair').bytecode) === INIT_CODE_HASH.UniswapV2Pair &&
        create2Address(v2Factory.address, keccak(strip(tokens[0].address) + strip(tokens[1].address)), INIT_CODE_HASH.UniswapV2Pair) === pairAddr,
      `createPair -> ${pairAddr} = CREATE2(factory, keccak(t0 ++ t1), 0x96e8ac42...)`,
    );
    const add = await router.send('v2AddLiquidity', pairAddr, 10n ** 21n, 2n * 10n ** 21n, FROM);
    const [lp] = await pair.call('balanceOf', FROM);
    check(add.status === '0x1' && logsOf(add, pair, 'Mint').length === 1 && lp > 0n, `v2AddLiquidity minted ${lp} LP`);
    const amountIn = 10n ** 18n;
    const [r0, r1] = await pair.call('getReserves');
    const expectedOut = (amountIn * 9970n * r1) / (r0 * 10000n + amountIn * 9970n);
    check(
      await router.reverts('v2Swap', pairAddr, tokens[0].address, amountIn, 0, FROM, 25),
      'v2Swap with feeBps 25 reverts (the V2 pair hard-codes 0.3%: UniswapV2: K)',
    );
    const [bal1Before] = await tokens[1].call('balanceOf', FROM);
    const sw = await router.send('v2Swap', pairAddr, tokens[0].address, amountIn, expectedOut, FROM, 30);
    const [bal1After] = await tokens[1].call('balanceOf', FROM);
    check(
      sw.status === '0x1' && logsOf(sw, pair, 'Swap').length === 1 && bal1After - bal1Before === expectedOut,
      `v2Swap(feeBps 30) succeeded with a Swap log, out = ${expectedOut}`,
    );
    check(
      await router.reverts('v2Swap', pairAddr, tokens[1].address, amountIn, 10n ** 30n, FROM, 30),
      'v2Swap enforces amountOutMin',
    );
  } finally {
    stop();
  }
}

main()
  .catch((e) => {
    failed++;
    console.error(`smoke: error: ${e.stack || e.message}`);
  })
  .finally(() => {
    console.log(`smoke: ${passed} passed, ${failed} failed`);
    process.exitCode = failed ? 1 : 0;
  });
