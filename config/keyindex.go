package config

import (
	"strings"
)

// keyIndex maps dotted keys to the line that defines them, found from the
// file's text, because the TOML decoder does not expose key positions.
type keyIndex struct {
	lines map[string]int
}

// newKeyIndex scans text for table headers and key/value lines. It handles
// [table] and [[array]] headers, bare, quoted and dotted keys; a key inside
// an inline table resolves to the line of the key holding that table.
func newKeyIndex(text string) *keyIndex {
	idx := &keyIndex{lines: map[string]int{}}
	table := ""
	for i, raw := range strings.Split(text, "\n") {
		ln := i + 1
		line := strings.TrimSpace(stripComment(raw))
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "[") {
			name := strings.Trim(line, "[] \t")
			table = normaliseKey(name)
			idx.add(table, ln)
			continue
		}
		k, _, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		key := normaliseKey(k)
		if key == "" {
			continue
		}
		if table != "" {
			key = table + "." + key
		}
		idx.add(key, ln)
	}
	return idx
}

func (idx *keyIndex) add(key string, line int) {
	if _, seen := idx.lines[key]; !seen {
		idx.lines[key] = line
	}
}

// line returns the line of key, or of its nearest defined parent, or 0.
func (idx *keyIndex) line(key string) int {
	for key != "" {
		if l, ok := idx.lines[key]; ok {
			return l
		}
		dot := strings.LastIndex(key, ".")
		if dot < 0 {
			break
		}
		key = key[:dot]
	}
	return 0
}

// normaliseKey removes quotes and spaces around the parts of a dotted key.
func normaliseKey(k string) string {
	parts := strings.Split(strings.TrimSpace(k), ".")
	for i, p := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(p), `"'`)
	}
	return strings.Join(parts, ".")
}

// stripComment drops a trailing # comment that is not inside a string.
func stripComment(line string) string {
	inBasic, inLiteral := false, false
	for i := 0; i < len(line); i++ {
		switch c := line[i]; {
		case c == '\\' && inBasic:
			i++
		case c == '"' && !inLiteral:
			inBasic = !inBasic
		case c == '\'' && !inBasic:
			inLiteral = !inLiteral
		case c == '#' && !inBasic && !inLiteral:
			return line[:i]
		}
	}
	return line
}
