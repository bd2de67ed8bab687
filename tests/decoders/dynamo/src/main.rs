// SPDX-License-Identifier: Apache-2.0
//! dynamo_decode: replay kvbm capture files into Dynamo's KV-router
//! indexing, decoded with the libraries Dynamo uses (serde + rmp-serde).
//!
//! Usage: dynamo_decode KV_BLOCK_SIZE FILE
//!
//! Transcribed from ai-dynamo/dynamo lib/kv-router/src/zmq_wire (struct
//! layouts and the decisions that publish a block, no code beyond them):
//!   - types.rs: KvEventBatch decoded as the tuple
//!     (f64, Vec<RawKvEvent>, Option<i32>), BlockHashValue (i64 or u64);
//!   - deserialize.rs: RawKvEvent as a tagged map ("type") or a tagged
//!     sequence [tag, block_hashes, parent, token_ids, block_size, lora_id,
//!     medium, lora_name, ...], unknown keys and trailing fields ignored;
//!     an empty medium counts as absent;
//!   - convert.rs: StorageTier::from_kv_medium_or_default (protocols.rs),
//!     create_stored_blocks (a block is published only with block_size ==
//!     the router's kv_block_size and enough token_ids: "token_ids too
//!     short");
//!   - types.rs ExtraKeyItem: extra_keys as Option<Vec<Option<Vec<ExtraKeyItem>>>>;
//!   - the radix tree drops a stored block whose parent it does not hold.
//! AllBlocksCleared is applied to the whole worker, as vLLM means it.
//!
//! Prints one JSON object: {"batches", "errors", "first_error",
//! "too_short", "orphans", "extra_key_blocks", "entries": [{"tier",
//! "hash", "tokens"}...]}.
use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

// types.rs: #[derive(Deserialize)] #[serde(untagged)] enum ExtraKeyItem.
#[allow(dead_code)]
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
enum ExtraKeyItem {
    Hash(String),
    HashWithSignedOffset((String, i64)),
    HashWithUnsignedOffset((String, u64)),
    Bytes(Vec<u8>),
    Signed(i64),
    Unsigned(u64),
    Float(f64),
    Bool(bool),
}

type ExtraKeys = Option<Vec<Option<Vec<ExtraKeyItem>>>>;

#[derive(Debug, Clone, Copy)]
enum BlockHashValue {
    Signed(i64),
    Unsigned(u64),
}

impl BlockHashValue {
    fn into_u64(self) -> u64 {
        match self {
            BlockHashValue::Signed(v) => v as u64,
            BlockHashValue::Unsigned(v) => v,
        }
    }
}

// #[serde(untagged)] enum { Signed(i64), Unsigned(u64) }, as a visitor.
impl<'de> Deserialize<'de> for BlockHashValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BlockHashValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a signed or unsigned 64-bit hash")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(BlockHashValue::Signed(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(BlockHashValue::Unsigned(v))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug)]
enum RawKvEvent {
    BlockStored {
        block_hashes: Vec<BlockHashValue>,
        parent_block_hash: Option<BlockHashValue>,
        token_ids: Vec<u32>,
        block_size: usize,
        medium: Option<String>,
        #[allow(dead_code)]
        lora_name: Option<String>,
        extra_keys: ExtraKeys,
    },
    BlockRemoved {
        block_hashes: Vec<BlockHashValue>,
        medium: Option<String>,
    },
    AllBlocksCleared,
}

fn normalize_medium(medium: Option<String>) -> Option<String> {
    medium.filter(|v| !v.is_empty())
}

impl<'de> Deserialize<'de> for RawKvEvent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(EventVisitor)
    }
}

struct EventVisitor;

impl<'de> Visitor<'de> for EventVisitor {
    type Value = RawKvEvent;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a kv event encoded as a tagged map or sequence")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut tag: Option<String> = None;
        let mut block_hashes: Option<Vec<BlockHashValue>> = None;
        let mut parent: Option<Option<BlockHashValue>> = None;
        let mut token_ids: Option<Vec<u32>> = None;
        let mut block_size: Option<usize> = None;
        let mut medium: Option<Option<String>> = None;
        let mut lora_name: Option<Option<String>> = None;
        let mut extra_keys: Option<ExtraKeys> = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "type" => tag = Some(map.next_value()?),
                "block_hashes" => block_hashes = Some(map.next_value()?),
                "parent_block_hash" => parent = Some(map.next_value()?),
                "token_ids" => token_ids = Some(map.next_value()?),
                "block_size" => block_size = Some(map.next_value()?),
                "medium" => medium = Some(map.next_value()?),
                "lora_name" => lora_name = Some(map.next_value()?),
                "extra_keys" => extra_keys = Some(map.next_value()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        match tag.as_deref() {
            Some("BlockStored") => Ok(RawKvEvent::BlockStored {
                block_hashes: block_hashes.ok_or_else(|| de::Error::missing_field("block_hashes"))?,
                parent_block_hash: parent.unwrap_or(None),
                token_ids: token_ids.ok_or_else(|| de::Error::missing_field("token_ids"))?,
                block_size: block_size.ok_or_else(|| de::Error::missing_field("block_size"))?,
                medium: normalize_medium(medium.unwrap_or(None)),
                lora_name: lora_name.unwrap_or(None),
                extra_keys: extra_keys.unwrap_or(None),
            }),
            Some("BlockRemoved") => Ok(RawKvEvent::BlockRemoved {
                block_hashes: block_hashes.ok_or_else(|| de::Error::missing_field("block_hashes"))?,
                medium: normalize_medium(medium.unwrap_or(None)),
            }),
            Some("AllBlocksCleared") => Ok(RawKvEvent::AllBlocksCleared),
            Some(other) => Err(de::Error::unknown_variant(
                other,
                &["BlockStored", "BlockRemoved", "AllBlocksCleared"],
            )),
            None => Err(de::Error::missing_field("type")),
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let tag: String = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(0, &"sequence must start with event tag"))?;
        let ev = match tag.as_str() {
            "BlockStored" => {
                let block_hashes = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &"missing block_hashes"))?;
                let parent_block_hash: Option<BlockHashValue> = seq.next_element()?.unwrap_or(None);
                let token_ids = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(3, &"missing token_ids"))?;
                let block_size = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(4, &"missing block_size"))?;
                let _lora_id: Option<u64> = seq.next_element()?.unwrap_or(None);
                let medium = normalize_medium(seq.next_element()?.unwrap_or(None));
                let lora_name = seq.next_element()?.unwrap_or(None);
                let extra_keys: ExtraKeys = seq.next_element()?.unwrap_or(None);
                RawKvEvent::BlockStored {
                    block_hashes,
                    parent_block_hash,
                    token_ids,
                    block_size,
                    medium,
                    lora_name,
                    extra_keys,
                }
            }
            "BlockRemoved" => {
                let block_hashes = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &"missing block_hashes"))?;
                let medium = normalize_medium(seq.next_element()?.unwrap_or(None));
                RawKvEvent::BlockRemoved { block_hashes, medium }
            }
            "AllBlocksCleared" => RawKvEvent::AllBlocksCleared,
            other => {
                return Err(de::Error::unknown_variant(
                    other,
                    &["BlockStored", "BlockRemoved", "AllBlocksCleared"],
                ))
            }
        };
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(ev)
    }
}

// KvEventBatch: Deserialize from the array [timestamp, [events], data_parallel_rank].
struct KvEventBatch {
    events: Vec<RawKvEvent>,
}

impl<'de> Deserialize<'de> for KvEventBatch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let arr: (f64, Vec<RawKvEvent>, Option<i32>) = Deserialize::deserialize(d)?;
        Ok(KvEventBatch { events: arr.1 })
    }
}

// StorageTier::from_kv_medium_or_default, names as serde(rename_all = "snake_case").
fn storage_tier(medium: Option<&str>) -> &'static str {
    match medium {
        Some("GPU") | Some("DEVICE") => "device",
        Some("CPU") | Some("CPU_PINNED") | Some("CPU_TIER1") => "host_pinned",
        Some("CPU_TIER2") | Some("DISK") | Some("NVME") | Some("STORAGE") => "disk",
        Some("EXTERNAL") | Some("NETWORK") | Some("REMOTE") | Some("SHARED") => "external",
        _ => "device",
    }
}

fn read_u32(data: &[u8], pos: &mut usize) -> usize {
    let v = u32::from_le_bytes([data[*pos], data[*pos + 1], data[*pos + 2], data[*pos + 3]]);
    *pos += 4;
    v as usize
}

// A list of messages: u32le frame count, then per frame u32le length and bytes.
fn read_capture(path: &str) -> Vec<Vec<Vec<u8>>> {
    let mut data = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .expect("capture file");
    let mut pos = 0usize;
    let mut msgs = Vec::new();
    while pos < data.len() {
        let n = read_u32(&data, &mut pos);
        let mut frames = Vec::new();
        for _ in 0..n {
            let l = read_u32(&data, &mut pos);
            frames.push(data[pos..pos + l].to_vec());
            pos += l;
        }
        msgs.push(frames);
    }
    msgs
}

fn json_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: dynamo_decode KV_BLOCK_SIZE FILE");
        std::process::exit(2);
    }
    let kv_block_size: usize = args[1].parse().expect("block size");
    // (tier, hash) -> tokens of the published block
    let mut index: BTreeMap<(&'static str, u64), Vec<u32>> = BTreeMap::new();
    let (mut batches, mut errors, mut too_short, mut orphans) = (0u64, 0u64, 0u64, 0u64);
    let mut extra_key_blocks = 0u64;
    let mut first_error = String::new();
    for frames in read_capture(&args[2]) {
        // The payload is the last frame, the seq the one before it; the
        // replay end marker has seq -1 and no payload.
        if frames.len() < 2 || frames[frames.len() - 1].is_empty() {
            continue;
        }
        let batch: KvEventBatch = match rmp_serde::from_slice(&frames[frames.len() - 1]) {
            Ok(b) => b,
            Err(e) => {
                errors += 1;
                if first_error.is_empty() {
                    first_error = e.to_string();
                }
                continue;
            }
        };
        batches += 1;
        for ev in batch.events {
            match ev {
                RawKvEvent::BlockStored {
                    block_hashes,
                    parent_block_hash,
                    token_ids,
                    block_size,
                    medium,
                    extra_keys,
                    ..
                } => {
                    if let Some(keys) = &extra_keys {
                        extra_key_blocks += keys.iter().filter(|k| k.is_some()).count() as u64;
                    }
                    let tier = storage_tier(medium.as_deref());
                    if let Some(p) = parent_block_hash {
                        if !index.contains_key(&(tier, p.into_u64())) {
                            orphans += 1;
                            continue;
                        }
                    }
                    // create_stored_blocks
                    let mut offset = 0usize;
                    for h in block_hashes {
                        if block_size != kv_block_size {
                            break;
                        }
                        let end = offset + block_size;
                        if end > token_ids.len() {
                            too_short += 1;
                            break;
                        }
                        index.insert((tier, h.into_u64()), token_ids[offset..end].to_vec());
                        offset = end;
                    }
                }
                RawKvEvent::BlockRemoved { block_hashes, medium } => {
                    let tier = storage_tier(medium.as_deref());
                    for h in block_hashes {
                        index.remove(&(tier, h.into_u64()));
                    }
                }
                RawKvEvent::AllBlocksCleared => index.clear(),
            }
        }
    }
    let entries: Vec<String> = index
        .iter()
        .map(|((tier, hash), toks)| {
            let t: Vec<String> = toks.iter().map(|x| x.to_string()).collect();
            format!(
                "{{\"tier\": {}, \"hash\": {}, \"tokens\": [{}]}}",
                json_str(tier),
                hash,
                t.join(", ")
            )
        })
        .collect();
    println!(
        "{{\"batches\": {}, \"errors\": {}, \"first_error\": {}, \"too_short\": {}, \"orphans\": {}, \"extra_key_blocks\": {}, \"entries\": [{}]}}",
        batches,
        errors,
        json_str(&first_error),
        too_short,
        orphans,
        extra_key_blocks,
        entries.join(", ")
    );
}
