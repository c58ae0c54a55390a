// Package printable escapes text from callers and upstream systems before
// it reaches an operator's terminal: escape sequences in it would be acted
// on (retitle the window, rewrite lines already printed), and tabs or
// newlines would shift a table. Neither form prints a control character,
// or any other character that is not graphic, as it is.
package printable

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// String is s with every rune that is not graphic (control characters
// C0, DEL and C1, tabs and newlines, format characters such as bidi
// overrides and zero-width spaces) written as its Go escape (\x1b, \t,
// \u202e), and every byte that is not UTF-8 as \xHH. A backslash already
// in s stays as it is.
func String(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unicode.IsPrint(r):
			b.WriteString(s[i : i+n])
		default:
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		}
		i += n
	}
	return b.String()
}

// JSON writes the runes of encoding/json's output that are not
// graphic as JSON escapes (\u007f, \u009b, \u202e; surrogate pairs above
// U+FFFF). encoding/json escapes C0 controls itself, but not DEL, C1
// controls or format characters. Outside strings its output is graphic
// ASCII, so every such rune is inside a string, and the escape decodes to
// the same value.
func JSON(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if unicode.IsPrint(r) {
			out = append(out, b[i:i+n]...)
			i += n
			continue
		}
		if r1, r2 := utf16.EncodeRune(r); r1 != unicode.ReplacementChar {
			out = fmt.Appendf(out, `\u%04x\u%04x`, r1, r2)
		} else {
			out = fmt.Appendf(out, `\u%04x`, r)
		}
		i += n
	}
	return out
}
