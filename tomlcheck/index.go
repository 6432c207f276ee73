package tomlcheck

import (
	"strconv"
	"strings"
)

// Index maps dotted keys to the line that defines them, found from the
// file's text, because the TOML decoder does not expose key positions.
type Index struct {
	lines map[string]int
}

// NewIndex scans text for table headers and key/value lines. It handles
// [table] and [[array]] headers, bare, quoted and dotted keys; a key inside
// an inline table resolves to the line of the key holding that table.
//
// The tables of an array of tables are also indexed by their 1-based
// position: the keys of the second [[product]] are "product[2].name" and
// so on, and a [product.decision] table after it is "product[2].decision"
// (the plain "product.name" keeps the line of the first).
func NewIndex(text string) *Index {
	idx := &Index{lines: map[string]int{}}
	table := ""
	arrays := map[string]int{} // array of tables → how many seen so far
	open := ""                 // the delimiter of a multi-line string still open, if any
	for i, raw := range strings.Split(text, "\n") {
		ln := i + 1
		if open != "" {
			// Inside a multi-line string: no keys until it closes.
			if j := strings.Index(raw, open); j >= 0 {
				open = unclosedMultiline(raw[j+len(open):])
			}
			continue
		}
		line := strings.TrimSpace(stripComment(raw))
		open = unclosedMultiline(line)
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "[") {
			name := strings.Trim(line, "[] \t")
			table = normaliseKey(name)
			idx.add(table, ln)
			if strings.HasPrefix(line, "[[") {
				arrays[table]++
			}
			if at := arrayElement(table, arrays); at != table {
				idx.add(at, ln)
				table = at
			}
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
			idx.add(plainKey(table)+"."+key, ln)
			key = table + "." + key
		}
		idx.add(key, ln)
	}
	return idx
}

// arrayElement returns table with its array-of-tables part numbered by
// the element it belongs to ("product.decision" in the second [[product]]
// is "product[2].decision"), or table itself when it is in no array.
func arrayElement(table string, arrays map[string]int) string {
	// The longest prefix of whole keys that is an array (depth steps, so
	// that a file of many tables stays linear).
	for end := len(table); end > 0; end = strings.LastIndexByte(table[:end], '.') {
		if n, ok := arrays[table[:end]]; ok {
			return table[:end] + "[" + strconv.Itoa(n) + "]" + table[end:]
		}
	}
	return table
}

// plainKey drops the element numbers of arrayElement.
func plainKey(key string) string {
	if !strings.Contains(key, "[") {
		return key
	}
	var b strings.Builder
	skip := false
	for _, r := range key {
		switch {
		case r == '[':
			skip = true
		case r == ']':
			skip = false
		case !skip:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func (idx *Index) add(key string, line int) {
	if _, seen := idx.lines[key]; !seen {
		idx.lines[key] = line
	}
}

// Has reports whether key itself (not only a parent) is defined in the text.
func (idx *Index) Has(key string) bool {
	_, ok := idx.lines[key]
	return ok
}

// Line returns the line of key, or of its nearest defined parent, or 0. A
// nil Index knows no lines.
func (idx *Index) Line(key string) int {
	if idx == nil {
		return 0
	}
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

// unclosedMultiline returns the delimiter (""" or ”') of a multi-line
// string that line opens and leaves open, or "".
func unclosedMultiline(line string) string {
	for i := 0; i < len(line); i++ {
		switch c := line[i]; {
		case strings.HasPrefix(line[i:], `"""`), strings.HasPrefix(line[i:], "'''"):
			delim := line[i : i+3]
			j := strings.Index(line[i+3:], delim)
			if j < 0 {
				return delim
			}
			i += 3 + j + 2
		case c == '"':
			for i++; i < len(line) && line[i] != '"'; i++ {
				if line[i] == '\\' {
					i++
				}
			}
		case c == '\'':
			if j := strings.IndexByte(line[i+1:], '\''); j >= 0 {
				i += 1 + j
			} else {
				i = len(line)
			}
		case c == '#':
			return ""
		}
	}
	return ""
}
