// Bitswap interop with Helia: a Helia node on libp2p (TCP, noise, yamux, identify, ping) and
// @helia/bitswap, nothing else (no routers, no gateways, no public bootstrap peers: it only ever
// talks to the address it is given or to whoever dials it on 127.0.0.1). Used by the p2p e2e
// test against `cairn serve` and against Cairn's in-process node.
//
// Run from a folder where @helia/utils, @helia/block-brokers, @helia/unixfs, blockstore-core,
// datastore-core, libp2p,
// @libp2p/tcp, @libp2p/identify, @libp2p/ping, @chainsafe/libp2p-noise, @chainsafe/libp2p-yamux,
// @multiformats/multiaddr and multiformats are installed (the test copies this file there):
//
//   node helia-bitswap.mjs fetch MULTIADDR/p2p/PEERID ROOTCID
//     dials the peer, reads the UnixFS file ROOTCID over Bitswap (every block verified against
//     its CID by Helia), prints {"sha256": "<hex of the file>", "size": N, "peer": "<remote>"}.
//   node helia-bitswap.mjs hold
//     listens on 127.0.0.1, puts one raw block of fresh random bytes in its blockstore, prints
//     {"peer": "12D3…", "listen": ["/ip4/127.0.0.1/tcp/PORT/p2p/12D3…"], "cid": "bafk…",
//      "sha256": "<hex of the block>"} on one line, then serves Bitswap until stdin closes.
//
// Exits non-zero (with the reason on stderr) on any failure; every wait is bounded.

// Node.js 20 lacks Promise.withResolvers (it came in 22), which libp2p's queues (it-queue, under
// mortice) call; every other API these versions use is in 20. This is the standard's definition,
// installed before the libraries are loaded (hence the dynamic imports).
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve, reject
    const promise = new this((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

const { createHash, randomBytes } = await import('node:crypto')
const { noise } = await import('@chainsafe/libp2p-noise')
const { yamux } = await import('@chainsafe/libp2p-yamux')
const { bitswap } = await import('@helia/block-brokers')
const { unixfs } = await import('@helia/unixfs')
const { Helia } = await import('@helia/utils')
const { identify } = await import('@libp2p/identify')
const { ping } = await import('@libp2p/ping')
const { tcp } = await import('@libp2p/tcp')
const { multiaddr } = await import('@multiformats/multiaddr')
const { MemoryBlockstore } = await import('blockstore-core')
const { MemoryDatastore } = await import('datastore-core')
const { createLibp2p } = await import('libp2p')
const { CID } = await import('multiformats/cid')
const raw = await import('multiformats/codecs/raw')
const { sha256 } = await import('multiformats/hashes/sha2')

const TIMEOUT_MS = 45_000

// Helia is the `Helia` class of @helia/utils, as `createHelia` builds it; `createHelia`'s defaults
// would also pull in WebRTC (a native module) and add public bootstrap peers, delegated routing and HTTP gateways: this
// node gets a libp2p of its own, Bitswap as its only block broker, and no routers.
async function start () {
  const libp2p = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    peerDiscovery: [],
    services: { identify: identify(), ping: ping() }
  })
  const helia = new Helia({
    libp2p,
    blockstore: new MemoryBlockstore(),
    datastore: new MemoryDatastore(),
    blockBrokers: [bitswap()],
    routers: []
  })
  await helia.start()
  return helia
}

const [mode, ...args] = process.argv.slice(2)
const watchdog = setTimeout(() => {
  console.error(`helia-bitswap ${mode}: timed out`)
  process.exit(3)
}, mode === 'hold' ? 300_000 : TIMEOUT_MS)

if (mode === 'fetch') {
  const [address, rootText] = args
  if (address == null || rootText == null) {
    console.error('usage: node helia-bitswap.mjs fetch MULTIADDR/p2p/PEERID ROOTCID')
    process.exit(2)
  }
  const helia = await start()
  const signal = AbortSignal.timeout(TIMEOUT_MS)
  const connection = await helia.libp2p.dial(multiaddr(address), { signal })
  const hash = createHash('sha256')
  let size = 0
  for await (const chunk of unixfs(helia).cat(CID.parse(rootText), { signal })) {
    hash.update(chunk)
    size += chunk.length
  }
  console.log(JSON.stringify({ sha256: hash.digest('hex'), size, peer: connection.remotePeer.toString() }))
  await helia.stop()
  clearTimeout(watchdog)
  process.exit(0)
} else if (mode === 'hold') {
  const helia = await start()
  const bytes = randomBytes(200_000)
  const cid = CID.createV1(raw.code, await sha256.digest(bytes))
  await helia.blockstore.put(cid, bytes)
  const peer = helia.libp2p.peerId.toString()
  const listen = helia.libp2p.getMultiaddrs().map((a) => a.toString())
  console.log(JSON.stringify({ peer, listen, cid: cid.toString(), sha256: createHash('sha256').update(bytes).digest('hex') }))
  process.stdin.resume()
  process.stdin.on('end', async () => {
    await helia.stop()
    clearTimeout(watchdog)
    process.exit(0)
  })
} else {
  console.error('usage: node helia-bitswap.mjs fetch|hold …')
  process.exit(2)
}
