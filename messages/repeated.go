package messages

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// A key a body spells twice in one object, or twice in different cases, is
// read by encoding/json (what every processor decodes with) as one key: the
// last one, matched to a struct field case-insensitively. Ingest reading
// the first, or another spelling, would identify and route the event by
// one value while a processor acts on the other. No sender spells a key
// twice, so such a body is refused where its keys feed an id, a subject or
// a partition.

// maxJSONDepth is encoding/json's own nesting limit: a deeper body is
// refused by every decoder anyway.
const maxJSONDepth = 10000

// keyScope says which objects are checked for repeated keys. path is the
// keys leading to an object, as spelt, arrays passed through.
type keyScope struct {
	// check returns the keys of the object at path that are checked:
	// every key (all), or those that fold to one of names.
	check func(path [][]byte) (names []string, all bool)
	// descend reports whether an object below member key of the object at
	// path may be checked.
	descend func(path [][]byte, key []byte) bool
}

// everyKey checks every key of every object.
var everyKey = keyScope{
	check:   func([][]byte) ([]string, bool) { return nil, true },
	descend: func([][]byte, []byte) bool { return true },
}

// repeatedKey returns an error naming the first key that appears twice in
// one object of body, spelt the same or differently cased (as
// bytes.EqualFold, and so encoding/json, compare names), among the keys
// scope checks. A body it cannot read is not its to refuse: the decoder
// that follows says what is wrong with it.
func repeatedKey(body []byte, scope keyScope) error {
	s := keyScan{routeScan: routeScan{b: body}, scope: scope}
	var stack [8][]byte
	s.ws()
	s.value(stack[:0], true, 0)
	return s.err
}

// keyScan walks one JSON value for repeated keys.
type keyScan struct {
	routeScan
	scope keyScope
	err   error
}

// value passes over one value; tracked says whether objects in it are
// inside scope, and path then holds the keys leading to it (siblings
// reuse its spare capacity, one after the other). It returns false on
// anything but a well-formed value, or once a repeat was found.
func (s *keyScan) value(path [][]byte, tracked bool, depth int) bool {
	if depth > maxJSONDepth {
		return false
	}
	switch s.peek() {
	case '{':
		return s.object(path, tracked, depth)
	case '[':
		s.i++
		s.ws()
		if s.peek() == ']' {
			s.i++
			return true
		}
		for {
			s.ws()
			if !s.value(path, tracked, depth+1) {
				return false
			}
			s.ws()
			switch s.peek() {
			case ',':
				s.i++
			case ']':
				s.i++
				return true
			default:
				return false
			}
		}
	}
	// A scalar: skip reads those without recursing.
	return s.skip(0)
}

func (s *keyScan) object(path [][]byte, tracked bool, depth int) bool {
	var (
		names []string
		all   bool
	)
	if tracked {
		names, all = s.scope.check(path)
	}
	var seen keySet
	s.i++
	s.ws()
	if s.peek() == '}' {
		s.i++
		return true
	}
	for {
		s.ws()
		start, end, escaped, ok := s.str()
		if !ok {
			return false
		}
		key := s.b[start:end]
		if escaped || !utf8.Valid(key) {
			// encoding/json compares keys unescaped, with invalid UTF-8
			// read as U+FFFD.
			var k string
			if json.Unmarshal(s.b[start-1:end+1], &k) != nil {
				return false
			}
			key = []byte(k)
		}
		if all || inFold(key, names) {
			if first, dup := seen.add(key); dup {
				s.err = repeatedError(path, first, key)
				return false
			}
		}
		s.ws()
		if s.peek() != ':' {
			return false
		}
		s.i++
		s.ws()
		deeper := tracked && s.scope.descend(path, key)
		var child [][]byte
		if deeper {
			child = append(path, key)
		}
		if !s.value(child, deeper, depth+1) {
			return false
		}
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return true
		default:
			return false
		}
	}
}

// repeatedError names the key and both its spellings.
func repeatedError(path [][]byte, first, again []byte) error {
	field := string(bytes.Join(append(path[:len(path):len(path)], first), []byte(".")))
	if len(first) == 0 {
		field += `""`
	}
	if len(field) > 128 {
		field = field[:128] + "..."
	}
	if bytes.Equal(first, again) {
		return &FieldError{Field: field, Problem: "appears twice in one object"}
	}
	return &FieldError{Field: field, Problem: fmt.Sprintf("appears twice in one object (as %.64q and %.64q: keys that differ only in case are one key to encoding/json)", first, again)}
}

func inFold(key []byte, names []string) bool {
	for _, n := range names {
		if foldEqual(key, n) {
			return true
		}
	}
	return false
}

// foldEqual is bytes.EqualFold(b, []byte(s)) without the copy.
func foldEqual(b []byte, s string) bool {
	if len(b) != len(s) {
		// Folding may pair runes of different lengths (K and the Kelvin
		// sign): only where one is not ASCII.
		return (!isASCII(b) || !isASCII(s)) && bytes.EqualFold(b, []byte(s))
	}
	for i := 0; i < len(b); i++ {
		x, y := b[i], s[i]
		if x >= utf8.RuneSelf || y >= utf8.RuneSelf {
			return bytes.EqualFold(b, []byte(s))
		}
		if x != y && lowerASCII(x) != lowerASCII(y) {
			return false
		}
	}
	return true
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func isASCII[T []byte | string](b T) bool {
	for i := 0; i < len(b); i++ {
		if b[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// keySet holds the keys of one object. The few keys of a typical object
// are compared one by one; a set that grows is indexed by folded key, so a
// body of many keys costs no more than its length.
type keySet struct {
	n     int
	first [16][]byte
	index map[string][]byte
}

// add adds key and reports the key it repeats, if any.
func (k *keySet) add(key []byte) ([]byte, bool) {
	if k.index == nil && k.n < len(k.first) {
		for _, prev := range k.first[:k.n] {
			if bytes.EqualFold(prev, key) {
				return prev, true
			}
		}
		k.first[k.n] = key
		k.n++
		return nil, false
	}
	if k.index == nil {
		k.index = make(map[string][]byte, 2*k.n)
		for _, prev := range k.first[:k.n] {
			k.index[string(foldKey(prev))] = prev
		}
	}
	f := string(foldKey(key))
	if prev, ok := k.index[f]; ok {
		return prev, true
	}
	k.index[f] = key
	return nil, false
}

// foldKey is key such that foldKey(x) == foldKey(y) exactly when
// bytes.EqualFold(x, y): encoding/json's folding of names.
func foldKey(key []byte) []byte {
	out := make([]byte, 0, len(key))
	for i := 0; i < len(key); {
		if c := key[i]; c < utf8.RuneSelf {
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			out = append(out, c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(key[i:])
		out = utf8.AppendRune(out, foldRune(r))
		i += n
	}
	return out
}

// foldRune is the smallest rune of r's fold set.
func foldRune(r rune) rune {
	for {
		r2 := unicode.SimpleFold(r)
		if r2 <= r {
			return r2
		}
		r = r2
	}
}
