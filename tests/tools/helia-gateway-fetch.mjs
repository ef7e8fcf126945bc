// Fetches one block from a trustless gateway with Helia's own client: the trustless-gateway block
// broker of @helia/block-brokers, as a Helia node uses it. Used by the gateway e2e test against
// `cairn serve`.
//
// Run from a folder where @helia/block-brokers, @libp2p/logger, @multiformats/multiaddr and
// multiformats are installed (the test copies this file there, so bare imports resolve):
//   node helia-gateway-fetch.mjs http://127.0.0.1:PORT CID
// Prints the sha256 (hex) of the block. Exits non-zero when the broker fails or the block does
// not match its CID.
//
// The broker finds gateways through Helia's routing; a stand-in routing names only the given
// URL as provider. It refuses plain-HTTP and private addresses unless told otherwise, hence
// allowInsecure and allowLocal for a node on 127.0.0.1.

import { createHash } from 'node:crypto'
import { trustlessGateway } from '@helia/block-brokers'
import { defaultLogger } from '@libp2p/logger'
import { multiaddr } from '@multiformats/multiaddr'
import { equals } from 'multiformats/bytes'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'

const [gateway, cidText] = process.argv.slice(2)
if (gateway == null || cidText == null) {
  console.error('usage: node helia-gateway-fetch.mjs http://HOST:PORT CID')
  process.exit(2)
}
const url = new URL(gateway)
const address = multiaddr(`/ip4/${url.hostname}/tcp/${url.port}/http`)
const cid = CID.parse(cidText)

const routing = {
  async * findProviders () {
    yield { multiaddrs: [address], routing: 'cairn-e2e' }
  }
}
const broker = trustlessGateway({ allowInsecure: true, allowLocal: true })({
  routing,
  logger: defaultLogger()
})

const block = await broker.retrieve(cid, {
  signal: AbortSignal.timeout(30_000),
  validateFn: async (bytes) => {
    if (cid.multihash.code !== sha256.code) throw new Error(`${cid}: not a sha2-256 CID`)
    const digest = await sha256.digest(bytes)
    if (!equals(digest.bytes, cid.multihash.bytes)) throw new Error(`block ${cid} does not match its CID`)
  }
})
console.log(createHash('sha256').update(block).digest('hex'))
