#!/usr/bin/env node
// Writes .dexlab/artifacts/<Name>.json = {contractName, abi, bytecode (creation, 0x...), source} for
//  - the DEX contracts shipped as prebuilt artifacts in npm packages (never recompiled: their creation
//    code, hence their CREATE2 init-code hashes, must stay the canonical ones), and
//  - the DEX contracts npm carries only as Solidity source (Aerodrome and Aerodrome Slipstream, from
//    sphere-mezo-solidity-files), compiled with the npm solc of the version their pragmas name (optimizer
//    200: without it Pool and CLPool exceed the 24,576-byte code limit). These are builds of the published
//    source, not Base's deployed bytecode; each artifact says so in its `source`.
//  - our own contracts in contracts/*.sol, compiled with the pinned npm solc (standard JSON, optimizer 200),
//    with their runtime code as well (deployedBytecode).
// Skips the solc run when nothing changed since the last run (stamp in .dexlab/artifacts/.stamp);
// pass --force to recompile anyway.
'use strict';

const fs = require('fs');
const path = require('path');
const crypto = require('crypto');

const ROOT = path.resolve(__dirname, '..');
const TOOLS = __dirname;
const OUT = path.join(ROOT, '.dexlab', 'artifacts');
const CONTRACTS = path.join(ROOT, 'contracts');
const STAMP = path.join(OUT, '.stamp');

const NPM_ARTIFACTS = [
  ['UniswapV2Factory', '@uniswap/v2-core/build/UniswapV2Factory.json'],
  ['UniswapV2Pair', '@uniswap/v2-core/build/UniswapV2Pair.json'],
  ['UniswapV3Factory', '@uniswap/v3-core/artifacts/contracts/UniswapV3Factory.sol/UniswapV3Factory.json'],
  ['UniswapV3Pool', '@uniswap/v3-core/artifacts/contracts/UniswapV3Pool.sol/UniswapV3Pool.json'],
  // @pancakeswap/v3-core ships no Solidity for these two, only hardhat artifacts (and no pool deployer at all).
  ['PancakeV3Factory', '@pancakeswap/v3-core/artifacts/contracts/PancakeV3Factory.sol/PancakeV3Factory.json'],
  ['PancakeV3Pool', '@pancakeswap/v3-core/artifacts/contracts/PancakeV3Pool.sol/PancakeV3Pool.json'],
];

const AERO = 'sphere-mezo-solidity-files';
const AERO_VERSION = '1.2.0';
// [solc package, [[artifact name, source file inside the package, contract name]]]
const SOURCE_BUILDS = [
  [
    'solc-0.8.20',
    [
      ['AerodromePool', 'domains/aerodrome/contracts/Pool.sol', 'Pool'],
      ['AerodromePoolFactory', 'domains/aerodrome/contracts/factories/PoolFactory.sol', 'PoolFactory'],
    ],
  ],
  [
    'solc-0.7.6',
    [
      ['SlipstreamPool', 'domains/aerodrome-slipstream/contracts/core/CLPool.sol', 'CLPool'],
      ['SlipstreamFactory', 'domains/aerodrome-slipstream/contracts/core/CLFactory.sol', 'CLFactory'],
      [
        'SlipstreamCustomSwapFeeModule',
        'domains/aerodrome-slipstream/contracts/core/fees/CustomSwapFeeModule.sol',
        'CustomSwapFeeModule',
      ],
      [
        'SlipstreamCustomUnstakedFeeModule',
        'domains/aerodrome-slipstream/contracts/core/fees/CustomUnstakedFeeModule.sol',
        'CustomUnstakedFeeModule',
      ],
    ],
  ],
];

function fail(msg) {
  console.error(`compile.js: ${msg}`);
  process.exit(1);
}

function normalizeBytecode(name, code) {
  if (typeof code !== 'string') fail(`${name}: no bytecode`);
  const hex = code.startsWith('0x') ? code.slice(2) : code;
  if (/__/.test(hex)) fail(`${name}: bytecode has unlinked library placeholders`);
  if (!/^[0-9a-fA-F]*$/.test(hex) || hex.length % 2 !== 0) fail(`${name}: bytecode is not hex`);
  if (hex.length === 0) fail(`${name}: empty bytecode`);
  return '0x' + hex.toLowerCase();
}

function write(artifact) {
  fs.writeFileSync(path.join(OUT, `${artifact.contractName}.json`), JSON.stringify(artifact, null, 2) + '\n');
}

function summary(names) {
  for (const name of names) {
    const a = JSON.parse(fs.readFileSync(path.join(OUT, `${name}.json`), 'utf8'));
    const size = (a.bytecode.length - 2) / 2;
    console.log(`${name.padEnd(34)} ${String(size).padStart(6)} bytes creation code  (${a.source})`);
  }
}

function sourceFiles() {
  return fs
    .readdirSync(CONTRACTS)
    .filter((f) => f.endsWith('.sol'))
    .sort();
}

function inputsHash(files) {
  const h = crypto.createHash('sha256');
  const add = (label, p) => h.update(label + '\0').update(fs.readFileSync(p)).update('\0');
  add('compile.js', __filename);
  add('package-lock.json', path.join(TOOLS, 'package-lock.json'));
  for (const f of files) add(f, path.join(CONTRACTS, f));
  return h.digest('hex');
}

function main() {
  const force = process.argv.includes('--force');
  fs.mkdirSync(OUT, { recursive: true });
  const files = sourceFiles();
  const hash = inputsHash(files);

  if (!force && fs.existsSync(STAMP)) {
    try {
      const stamp = JSON.parse(fs.readFileSync(STAMP, 'utf8'));
      if (stamp.hash === hash && stamp.names.every((n) => fs.existsSync(path.join(OUT, `${n}.json`)))) {
        console.log('artifacts up to date (.dexlab/artifacts); use --force to rebuild');
        summary(stamp.names);
        return;
      }
    } catch (_) {
      /* unreadable stamp: rebuild */
    }
  }

  const names = [];

  // 1. Prebuilt npm artifacts, copied as-is.
  for (const [name, rel] of NPM_ARTIFACTS) {
    const a = JSON.parse(fs.readFileSync(require.resolve(rel, { paths: [TOOLS] }), 'utf8'));
    const bytecode = a.bytecode !== undefined ? a.bytecode : a.evm && a.evm.bytecode && a.evm.bytecode.object;
    if (!Array.isArray(a.abi)) fail(`${rel}: no abi`);
    write({ contractName: name, abi: a.abi, bytecode: normalizeBytecode(name, bytecode), source: `npm:${rel}` });
    names.push(name);
  }

  // 2. DEX contracts published as source only, each with the compiler its pragma pins.
  const pkg = path.dirname(require.resolve(`${AERO}/package.json`, { paths: [TOOLS] }));
  const installed = JSON.parse(fs.readFileSync(path.join(pkg, 'package.json'), 'utf8')).version;
  if (installed !== AERO_VERSION) fail(`${AERO} ${installed} installed, ${AERO_VERSION} expected (run scripts/setup.sh)`);
  const modules = path.resolve(pkg, '..');
  // Imports resolve inside the package first (relative paths), then in node_modules (@openzeppelin/...).
  const findImport = (p) => {
    for (const base of [pkg, modules]) {
      const f = path.join(base, p);
      if (f.startsWith(base + path.sep) && fs.existsSync(f)) return { contents: fs.readFileSync(f, 'utf8') };
    }
    return { error: `import not found: ${p}` };
  };
  for (const [compiler, wanted] of SOURCE_BUILDS) {
    const solcN = require(require.resolve(compiler, { paths: [TOOLS] }));
    const sources = {};
    for (const [, file] of wanted) sources[file] = { content: fs.readFileSync(path.join(pkg, file), 'utf8') };
    const input = {
      language: 'Solidity',
      sources,
      settings: {
        optimizer: { enabled: true, runs: 200 },
        outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
      },
    };
    const out = JSON.parse(solcN.compile(JSON.stringify(input), { import: findImport }));
    const errs = (out.errors || []).filter((e) => e.severity === 'error');
    for (const e of errs) console.error(e.formattedMessage || e.message);
    if (errs.length) fail(`solc ${solcN.version()} reported ${errs.length} error(s) compiling ${AERO}`);
    for (const [name, file, contract] of wanted) {
      const c = out.contracts && out.contracts[file] && out.contracts[file][contract];
      if (!c) fail(`${file} has no contract ${contract}`);
      const runtime = normalizeBytecode(name, c.evm.deployedBytecode.object);
      if ((runtime.length - 2) / 2 > 24576) fail(`${name}: runtime code over the 24,576-byte limit`);
      write({
        contractName: name,
        abi: c.abi,
        bytecode: normalizeBytecode(name, c.evm.bytecode.object),
        deployedBytecode: runtime,
        source: `npm:${AERO}@${AERO_VERSION}/${file} (published source built with solc ${solcN.version().split('+')[0]}, optimizer 200; not Base's deployed bytecode)`,
      });
      names.push(name);
    }
  }

  // 3. Our contracts, compiled with the pinned solc.
  const solc = require(require.resolve('solc', { paths: [TOOLS] }));
  const sources = {};
  for (const f of files) sources[`contracts/${f}`] = { content: fs.readFileSync(path.join(CONTRACTS, f), 'utf8') };
  const input = {
    language: 'Solidity',
    sources,
    settings: {
      optimizer: { enabled: true, runs: 200 },
      outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object', 'evm.methodIdentifiers'] } },
    },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  let errors = 0;
  for (const e of output.errors || []) {
    if (e.severity === 'error') errors++;
    console.error(e.formattedMessage || e.message);
  }
  if (errors) fail(`solc ${solc.version()} reported ${errors} error(s)`);

  for (const [file, contracts] of Object.entries(output.contracts || {})) {
    for (const [name, c] of Object.entries(contracts)) {
      if (!c.evm.bytecode.object) continue; // interfaces and abstract contracts
      if (names.includes(name)) fail(`duplicate contract name ${name} (${file})`);
      write({
        contractName: name,
        abi: c.abi,
        bytecode: normalizeBytecode(name, c.evm.bytecode.object),
        // The runtime code: what a state-override eth_call puts at an address (paper trading's node check).
        deployedBytecode: normalizeBytecode(name, c.evm.deployedBytecode.object),
        source: file,
      });
      names.push(name);
    }
  }

  fs.writeFileSync(STAMP, JSON.stringify({ hash, solc: solc.version(), names }, null, 2) + '\n');
  console.log(`compiled contracts/ with solc ${solc.version()}; wrote ${names.length} artifacts to .dexlab/artifacts`);
  summary(names);
}

main();
