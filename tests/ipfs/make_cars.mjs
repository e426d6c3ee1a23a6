// Builds real UnixFS DAGs and CARv1 files of the fixture adapters with the js-ipfs
// implementation (ipfs-unixfs-importer, @ipld/car), for the store's IPFS tests to check
// their own CID/CAR/UnixFS code against.
//
//   node make_cars.mjs <fixtures/tiny dir> <out dir>
//
// Writes into <out dir>: dir.car (PEFT adapter directory), file.car (the GGUF file, 8 KiB
// chunks in a 2-level balanced tree), file_v0.car (the GGUF as CIDv0 with dag-pb leaves),
// gguf_dir.car (a directory holding only the GGUF), raw.bin (adapter_config.json as one
// raw block) and cids.json mapping each name to its root CID.
import fs from 'node:fs'
import path from 'node:path'
import { importer } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'
import { CarWriter } from '@ipld/car/writer'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'

const [tiny, out] = process.argv.slice(2)
if (!tiny || !out) {
  console.error('usage: node make_cars.mjs <fixtures/tiny dir> <out dir>')
  process.exit(2)
}
const read = (p) => new Uint8Array(fs.readFileSync(path.join(tiny, p)))
const config = read('adapters/r8_qv/adapter_config.json')
const weights = read('adapters/r8_qv/adapter_model.safetensors')
const gguf = read('gguf_lora/r8_qv.gguf')

/** Import `entries`, write every block into <out>/<name>.car with the last entry as root. */
async function build (name, entries, options) {
  const blocks = []
  const store = { put: async (cid, bytes) => { blocks.push({ cid, bytes }); return cid } }
  let root
  for await (const e of importer(entries, store, options)) root = e.cid
  const { writer, out: carBytes } = CarWriter.create([root])
  const chunks = []
  const done = (async () => { for await (const c of carBytes) chunks.push(c) })()
  for (const b of blocks) await writer.put(b)
  await writer.close()
  await done
  fs.writeFileSync(path.join(out, `${name}.car`), Buffer.concat(chunks))
  return { root: root.toString(), blocks: blocks.length }
}

const kib = (n) => fixedSize({ chunkSize: n * 1024 })
const result = {
  dir: await build('dir', [
    { path: 'adapter_config.json', content: config },
    { path: 'adapter_model.safetensors', content: weights }
  ], { wrapWithDirectory: true, chunker: kib(16), rawLeaves: true, cidVersion: 1 }),
  file: await build('file', [{ content: gguf }],
    { chunker: kib(8), layout: balanced({ maxChildrenPerNode: 3 }), rawLeaves: true, cidVersion: 1 }),
  file_v0: await build('file_v0', [{ content: gguf }],
    { chunker: kib(16), rawLeaves: false, cidVersion: 0 }),
  gguf_dir: await build('gguf_dir', [{ path: 'r8_qv.gguf', content: gguf }],
    { wrapWithDirectory: true, chunker: kib(16), rawLeaves: true, cidVersion: 1 })
}
const rawCid = CID.create(1, raw.code, await sha256.digest(config))
fs.writeFileSync(path.join(out, 'raw.bin'), config)
result.raw = { root: rawCid.toString(), blocks: 1 }
fs.writeFileSync(path.join(out, 'cids.json'), JSON.stringify(result, null, 2) + '\n')
console.log(JSON.stringify(result))
