// Reads a CAR with the reference JS implementation (@ipld/car), checks every block against its
// CID, and exports the UnixFS file under a root with ipfs-unixfs-exporter, as any IPFS tool would.
// Used by the gateway e2e test on the CARs Cairn serves at /ipfs/{cid}.
//
// Run from a folder where @ipld/car, ipfs-unixfs-exporter, multiformats and blockstore-core are
// installed (the test copies this file there, so bare imports resolve):
//   node verify-car.mjs FILE.car ROOT [OFFSET LENGTH]
// Prints one line of JSON: {"roots": [...], "blocks": [...], "size": N, "sha256": "hex"}, where
// size and sha256 are those of the exported bytes (the whole file, or LENGTH bytes at OFFSET).
// Exits non-zero when a block does not match its CID or the file cannot be exported.

import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { CarReader } from '@ipld/car'
import { MemoryBlockstore } from 'blockstore-core'
import { exporter } from 'ipfs-unixfs-exporter'
import { equals } from 'multiformats/bytes'
import { CID } from 'multiformats/cid'
import { identity } from 'multiformats/hashes/identity'
import { sha256, sha512 } from 'multiformats/hashes/sha2'

const [file, rootText, offset, length] = process.argv.slice(2)
if (file == null || rootText == null) {
  console.error('usage: node verify-car.mjs FILE.car ROOT [OFFSET LENGTH]')
  process.exit(2)
}
const hashers = { [identity.code]: identity, [sha256.code]: sha256, [sha512.code]: sha512 }

const reader = await CarReader.fromBytes(readFileSync(file))
const roots = (await reader.getRoots()).map(String)
const store = new MemoryBlockstore()
const blocks = []
for await (const { cid, bytes } of reader.blocks()) {
  const hasher = hashers[cid.multihash.code]
  if (hasher == null) throw new Error(`block ${cid}: no hasher for multihash 0x${cid.multihash.code.toString(16)}`)
  const digest = await hasher.digest(bytes)
  if (!equals(digest.bytes, cid.multihash.bytes)) throw new Error(`block ${cid} does not match its CID`)
  await store.put(cid, bytes)
  blocks.push(cid.toString())
}

const entry = await exporter(CID.parse(rootText), store)
if (entry.type !== 'file' && entry.type !== 'raw') throw new Error(`${rootText} is a ${entry.type}, not a file`)
const options = offset == null ? {} : { offset: Number(offset), length: Number(length) }
const hash = createHash('sha256')
let size = 0
for await (const chunk of entry.content(options)) {
  hash.update(chunk)
  size += chunk.length
}
console.log(JSON.stringify({ roots, blocks, size, sha256: hash.digest('hex') }))
