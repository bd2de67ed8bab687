// SPDX-License-Identifier: Apache-2.0

// Command llmd_decode replays kvbm capture files into llm-d's KV-event
// indexing, decoded with the library llm-d uses (vmihailenco/msgpack v5).
//
// Usage: llmd_decode router|kvcache live|replay FILE
//
// Transcribed from llm-d's source, struct layouts and the decisions that
// make a block indexed or not (no code copied beyond the layouts):
//   - router: llm-d/llm-d-router pkg/kvevents/engineadapter/vllm_adapter.go
//     (msgpackVLLMEventBatch, map events normalised to positional fields in
//     blockStoredFieldOrder / blockRemovedFieldOrder, the positional
//     converters), pkg/kvevents/pool.go (normalizeDeviceTier, the parent
//     request-key lookup, request keys from tokens, handleDeviceTierUpdate,
//     pod-wide AllBlocksCleared) and pkg/kvevents/zmq_subscriber.go
//     (parseEventFrame, the replay end marker, "malformed replay frame");
//   - kvcache: llm-d/llm-d-kv-cache, the same files before map events:
//     events decode only as tagged arrays; no replay client.
//
// The request-key hash is a stand-in (SHA-256 of parent key, tokens, model
// name and multimodal hashes): llm-d's ChunkedTokenDatabase is not packaged
// for Debian.
// What is checked is what the index holds: which engine keys get request
// keys, from which tokens, on which device tier.
//
// Prints one JSON object: {"batches": n, "errors": n, "first_error": s,
// "replay_error": s, "entries": [{"tier", "hash", "tokens"}...]}.
package main

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/vmihailenco/msgpack/v5"
)

// Layout of llm-d's msgpackVLLMEventBatch (array envelope).
type eventBatch struct {
	_                struct{} `msgpack:",array"`
	TS               float64
	Events           []msgpack.RawMessage
	DataParallelRank *int `msgpack:",omitempty"`
}

var storedOrder = []string{"block_hashes", "parent_block_hash", "token_ids", "block_size",
	"lora_id", "medium", "lora_name", "extra_keys", "group_idx",
	"kv_cache_spec_kind", "kv_cache_spec_sliding_window"}
var removedOrder = []string{"block_hashes", "medium", "group_idx"}

type stored struct {
	hashes    []uint64
	parent    uint64
	tokens    []uint32
	blockSize int
	tier      string
	loraName  string
	extraKeys [][]any // per block: nil, or its keys (convertExtraKeys)
}

type removed struct {
	hashes []uint64
	tier   string
}

type cleared struct{}

func hashOf(v any) (uint64, error) { // getHashAsUint64
	switch h := v.(type) {
	case uint64:
		return h, nil
	case int64:
		return uint64(h), nil
	case []byte:
		if len(h) == 0 {
			return 0, fmt.Errorf("hash byte slice is empty")
		}
		b := make([]byte, 8)
		if len(h) >= 8 {
			copy(b, h[len(h)-8:])
		} else {
			copy(b[8-len(h):], h)
		}
		return binary.BigEndian.Uint64(b), nil
	}
	return 0, fmt.Errorf("unsupported hash type: %T", v)
}

func intOf(v any) (int, error) { // toInt
	switch n := v.(type) {
	case int8:
		return int(n), nil
	case int16:
		return int(n), nil
	case int32:
		return int(n), nil
	case int64:
		return int(n), nil
	case uint8:
		return int(n), nil
	case uint16:
		return int(n), nil
	case uint32:
		return int(n), nil
	case uint64:
		return int(n), nil
	}
	return 0, fmt.Errorf("unsupported numeric type: %T", v)
}

func at(f []any, i int) any {
	if i < len(f) {
		return f[i]
	}
	return nil
}

func hashes(v any) ([]uint64, error) {
	raw, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("block_hashes is not an array: %T", v)
	}
	out := []uint64{}
	for _, r := range raw {
		h, err := hashOf(r)
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, nil
}

func decodeEvent(raw []byte, mapEvents bool) (any, error) {
	var fields []any
	if mapEvents {
		var decoded any
		if err := msgpack.Unmarshal(raw, &decoded); err != nil {
			return nil, err
		}
		switch ev := decoded.(type) {
		case []any:
			fields = ev
		case map[string]any:
			tag, ok := ev["type"].(string)
			if !ok {
				return nil, fmt.Errorf("map-encoded event without a string tag")
			}
			fields = []any{tag}
			order := []string{}
			if tag == "BlockStored" {
				order = storedOrder
			} else if tag == "BlockRemoved" {
				order = removedOrder
			}
			for _, name := range order {
				fields = append(fields, ev[name])
			}
		default:
			return nil, fmt.Errorf("event is neither an array nor a map: %T", decoded)
		}
	} else if err := msgpack.Unmarshal(raw, &fields); err != nil {
		return nil, fmt.Errorf("failed to decode tagged union: %w", err)
	}
	if len(fields) < 1 {
		return nil, fmt.Errorf("malformed tagged union: no tag")
	}
	tag, ok := fields[0].(string)
	if !ok {
		return nil, fmt.Errorf("event tag is not a string: %T", fields[0])
	}
	switch tag {
	case "BlockStored":
		if len(fields) < 5 {
			return nil, fmt.Errorf("BlockStored: need at least 5 fields, got %d", len(fields))
		}
		s := stored{}
		var err error
		if s.hashes, err = hashes(fields[1]); err != nil {
			return nil, err
		}
		if fields[2] != nil {
			if s.parent, err = hashOf(fields[2]); err != nil {
				return nil, err
			}
		}
		toks, ok := fields[3].([]any)
		if !ok {
			return nil, fmt.Errorf("token_ids is not an array: %T", fields[3])
		}
		for _, t := range toks {
			n, err := intOf(t)
			if err != nil {
				return nil, err
			}
			s.tokens = append(s.tokens, uint32(n))
		}
		if s.blockSize, err = intOf(fields[4]); err != nil {
			return nil, err
		}
		if m := at(fields, 6); m != nil {
			if s.tier, ok = m.(string); !ok {
				return nil, fmt.Errorf("BlockStored: medium is not a string: %T", m)
			}
		}
		if l := at(fields, 7); l != nil {
			if s.loraName, ok = l.(string); !ok {
				return nil, fmt.Errorf("BlockStored: lora_name is not a string: %T", l)
			}
		}
		if x := at(fields, 8); x != nil {
			raw, ok := x.([]any)
			if !ok {
				return nil, fmt.Errorf("BlockStored: extra_keys is not an array: %T", x)
			}
			for i, k := range raw {
				if k == nil {
					s.extraKeys = append(s.extraKeys, nil)
				} else if ks, ok := k.([]any); ok {
					s.extraKeys = append(s.extraKeys, ks)
				} else {
					return nil, fmt.Errorf("extra_keys[%d] has invalid type %T, expected []any or nil", i, k)
				}
			}
		}
		return s, nil
	case "BlockRemoved":
		if len(fields) < 2 {
			return nil, fmt.Errorf("BlockRemoved: need at least 2 fields, got %d", len(fields))
		}
		r := removed{}
		var err error
		if r.hashes, err = hashes(fields[1]); err != nil {
			return nil, err
		}
		if m := at(fields, 2); m != nil {
			if r.tier, ok = m.(string); !ok {
				return nil, fmt.Errorf("BlockRemoved: medium is not a string: %T", m)
			}
		}
		return r, nil
	case "AllBlocksCleared":
		return cleared{}, nil
	}
	return nil, fmt.Errorf("unknown vLLM event tag: %s", tag)
}

// The index: engine key -> request key; request key -> device tiers and
// the tokens it was built from. One pod (the topic's), so pod is implicit.
type index struct {
	engineToRequest map[uint64]uint64
	requestTiers    map[uint64]map[string]bool
	requestTokens   map[uint64][]uint32
	requestEngine   map[uint64]uint64
}

func newIndex() *index {
	return &index{map[uint64]uint64{}, map[uint64]map[string]bool{}, map[uint64][]uint32{},
		map[uint64]uint64{}}
}

func tierOf(medium string) string { // normalizeDeviceTier
	if medium == "" {
		return "gpu"
	}
	return strings.ToLower(medium)
}

// The stand-in for TokensToKVBlockKeys: parent key, tokens, model name and
// the block's multimodal hashes (ParseRawExtraKeys: bare strings, or the
// first element of a [hash, offset] pair).
func requestKey(parent uint64, tokens []uint32, model string, extra []any) uint64 {
	h := sha256.New()
	_ = binary.Write(h, binary.LittleEndian, parent)
	_ = binary.Write(h, binary.LittleEndian, tokens)
	h.Write([]byte(model))
	for _, e := range extra {
		switch v := e.(type) {
		case string:
			h.Write([]byte(v))
		case []any:
			if len(v) >= 1 {
				if s, ok := v[0].(string); ok {
					h.Write([]byte(s))
				}
			}
		}
	}
	return binary.BigEndian.Uint64(h.Sum(nil)[:8])
}

func (ix *index) apply(ev any, model string, blockSize int) {
	switch e := ev.(type) {
	case stored:
		tier := tierOf(e.tier)
		effective := model
		if e.loraName != "" {
			effective = e.loraName
		}
		parentKey := uint64(0)
		if e.parent != 0 {
			k, ok := ix.engineToRequest[e.parent]
			if !ok {
				return // "Failed to get request key for parent block"
			}
			parentKey = k
		}
		// Request keys at the canonical block size, one per full chunk.
		var keys []uint64
		var chunks [][]uint32
		for i := 0; i+blockSize <= len(e.tokens); i += blockSize {
			chunk := e.tokens[i : i+blockSize]
			var extra []any
			if b := i / blockSize; b < len(e.extraKeys) {
				extra = e.extraKeys[b]
			}
			parentKey = requestKey(parentKey, chunk, effective, extra)
			keys = append(keys, parentKey)
			chunks = append(chunks, chunk)
		}
		if len(keys) == 0 { // handleDeviceTierUpdate
			if len(e.tokens) != 0 {
				return
			}
			for _, h := range e.hashes {
				if rk, ok := ix.engineToRequest[h]; ok {
					ix.requestTiers[rk][tier] = true
				}
			}
			return
		}
		if len(keys) != len(e.hashes) {
			return // kvbm's engine and canonical block sizes are equal
		}
		for i, h := range e.hashes {
			ix.engineToRequest[h] = keys[i]
			if ix.requestTiers[keys[i]] == nil {
				ix.requestTiers[keys[i]] = map[string]bool{}
			}
			ix.requestTiers[keys[i]][tier] = true
			ix.requestTokens[keys[i]] = chunks[i]
			ix.requestEngine[keys[i]] = h
		}
	case removed:
		tier := tierOf(e.tier)
		for _, h := range e.hashes {
			rk, ok := ix.engineToRequest[h]
			if !ok {
				continue
			}
			delete(ix.requestTiers[rk], tier)
			if len(ix.requestTiers[rk]) == 0 {
				delete(ix.requestTiers, rk)
				delete(ix.requestTokens, rk)
				delete(ix.requestEngine, rk)
				delete(ix.engineToRequest, h)
			}
		}
	case cleared: // pod-wide, every tier
		*ix = *newIndex()
	}
}

func readCapture(path string) ([][][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var msgs [][][]byte
	u32 := func() (uint32, error) {
		var b [4]byte
		if _, err := io.ReadFull(f, b[:]); err != nil {
			return 0, err
		}
		return binary.LittleEndian.Uint32(b[:]), nil
	}
	for {
		n, err := u32()
		if err == io.EOF {
			return msgs, nil
		} else if err != nil {
			return nil, err
		}
		msg := make([][]byte, n)
		for i := range msg {
			l, err := u32()
			if err != nil {
				return nil, err
			}
			msg[i] = make([]byte, l)
			if _, err := io.ReadFull(f, msg[i]); err != nil {
				return nil, err
			}
		}
		msgs = append(msgs, msg)
	}
}

type entry struct {
	Tier   string   `json:"tier"`
	Hash   uint64   `json:"hash"`
	Tokens []uint32 `json:"tokens"`
}

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: llmd_decode router|kvcache live|replay FILE")
		os.Exit(2)
	}
	mapEvents, replay := os.Args[1] == "router", os.Args[2] == "replay"
	msgs, err := readCapture(os.Args[3])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ix := newIndex()
	out := map[string]any{"batches": 0, "errors": 0, "first_error": "", "replay_error": ""}
	batches, errors := 0, 0
	for _, frames := range msgs {
		if replay && len(frames) == 3 && len(frames[2]) == 0 {
			break // end of replay
		}
		if len(frames) != 3 || len(frames[1]) < 8 { // parseEventFrame
			if replay {
				out["replay_error"] = fmt.Sprintf("malformed replay frame with %d frames", len(frames))
				ix = newIndex() // invalidateReplay resets the source
				break
			}
			continue
		}
		topic, payload := string(frames[0]), frames[2]
		model := ""
		if parts := strings.Split(topic, "@"); len(parts) == 3 {
			model = parts[2]
		}
		var b eventBatch
		if err := msgpack.Unmarshal(payload, &b); err != nil {
			errors++
			if out["first_error"] == "" {
				out["first_error"] = "failed to decode vLLM event batch: " + err.Error()
			}
			continue
		}
		var evs []any
		failed := false
		for _, raw := range b.Events {
			ev, err := decodeEvent(raw, mapEvents)
			if err != nil { // ParseMessage fails for the whole batch
				errors++
				if out["first_error"] == "" {
					out["first_error"] = "failed to decode vLLM event: " + err.Error()
				}
				failed = true
				break
			}
			evs = append(evs, ev)
		}
		if failed {
			continue
		}
		batches++
		for _, ev := range evs {
			bs := 0
			if s, ok := ev.(stored); ok {
				bs = s.blockSize
			}
			ix.apply(ev, model, bs)
		}
	}
	entries := []entry{}
	for rk, tiers := range ix.requestTiers {
		for t := range tiers {
			entries = append(entries, entry{t, ix.requestEngine[rk], ix.requestTokens[rk]})
		}
	}
	sort.Slice(entries, func(i, j int) bool {
		if entries[i].Tier != entries[j].Tier {
			return entries[i].Tier < entries[j].Tier
		}
		return entries[i].Hash < entries[j].Hash
	})
	out["batches"], out["errors"], out["entries"] = batches, errors, entries
	_ = json.NewEncoder(os.Stdout).Encode(out)
}
