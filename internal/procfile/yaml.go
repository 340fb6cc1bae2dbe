package procfile

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// This file reads the YAML of process files (ecosystem.yaml, process.yml).
//
// Why a reader of our own: the YAML library was 245 kB of a binary that is
// copied into every image (5 % of gm2-init), for files of a few dozen
// lines; this reader is 70 kB. What process files are written in is a
// small part of YAML, and that part is read here, with the library's
// results: block mappings and sequences (also "- key: value" and a list at
// its key's indentation), flow collections ([a, b], {k: v}) across lines,
// plain, 'single' and "double" quoted scalars with YAML's line folding and
// escapes, literal and folded block scalars (| > with chomping and
// indentation indicators), comments, anchors, aliases and merge keys
// (<<: *defaults), the !!str tag, a leading %YAML directive and ---. The
// first document is used, the others read for their errors. A plain
// scalar resolves as go.yaml.in/yaml/v3 resolves it into an interface{}
// (null, true/false, its integers, floats, .inf, .nan), except a
// timestamp (2024-01-02), which stays the text written instead of becoming
// a time.Time (printed back as 2024-01-02T00:00:00Z).
//
// Refused with a line number: other tags, complex keys (? key), keys that
// are not scalars, anchors or tags on keys, "key: value" pairs inside
// [ ], tabs that indent, NEL/LS/PS characters. The fuzz target
// FuzzYAMLMatchesLibrary checks that whatever this reader accepts, the
// library reads the same.

// maxYAMLDepth bounds nesting: a file of 4 MiB of "[" must fail, not
// overflow the stack.
const maxYAMLDepth = 512

// maxAliasValues bounds what aliases add to the tree ("billion laughs":
// nine aliases of nine aliases of ... would expand to 10^9 values).
const maxAliasValues = 100_000

// maxKeyLen: a key is on one line and at most this long, as in libyaml.
const maxKeyLen = 1024

type yamlKind uint8

const (
	yamlScalar yamlKind = iota
	yamlSeq
	yamlMap
)

// yamlNode is a parsed node. An alias is the anchored node itself, shared.
type yamlNode struct {
	kind  yamlKind
	line  int
	text  string      // a scalar's value
	plain bool        // a plain scalar (resolved), not quoted or block
	items []*yamlNode // a sequence's items; a mapping's keys and values, alternating
}

// opener is the bracket that opened a flow collection.
func (n *yamlNode) opener() byte { return "[{"[n.kind-yamlSeq] }

type yamlParser struct {
	src       string
	pos       int
	line      int // of pos, 1-based
	lineStart int // offset of the line holding pos
	// anchors holds nil for an anchor whose value is being read: an
	// alias to it is refused, and a definition of the same name inside
	// that value wins, as in the library.
	anchors map[string]*yamlNode
	depth   int
	nodes   int
}

// parseYAML reads the first document of src into the process file tree.
func parseYAML(src string) (any, error) {
	src = strings.TrimPrefix(src, "\ufeff")
	src = strings.ReplaceAll(src, "\r\n", "\n")
	src = strings.ReplaceAll(src, "\r", "\n")
	if err := checkChars(src); err != nil {
		return nil, err
	}
	p := &yamlParser{src: src, line: 1, anchors: map[string]*yamlNode{}}
	root, err := p.document()
	if err != nil {
		return nil, err
	}
	// The documents after the first are read for their errors only: a
	// broken one is a mistake worth a message.
	for !p.eof() {
		if p.atDocMarker() && p.src[p.pos] == '.' {
			p.pos += 3
			if err := p.settle(); err != nil {
				return nil, err
			}
			continue
		}
		p.anchors = map[string]*yamlNode{}
		if _, err := p.document(); err != nil {
			return nil, err
		}
	}
	c := &yamlTree{budget: p.nodes + maxAliasValues}
	return c.tree(root, nil)
}

// checkChars refuses what YAML does not allow in a file (bytes that are
// not UTF-8, control characters other than tab and line breaks), and the
// Unicode line breaks (NEL, LS, PS), which YAML 1.1 and 1.2 read apart.
func checkChars(src string) error {
	for i, r := range src {
		switch {
		case r == utf8.RuneError:
			if _, n := utf8.DecodeRuneInString(src[i:]); n > 1 {
				continue
			}
			return fmt.Errorf("line %d: not valid UTF-8", 1+strings.Count(src[:i], "\n"))
		case r == '\t' || r == '\n' || r >= 0x20 && r <= 0x7e,
			r >= 0xa0 && r <= 0xd7ff && r != 0x2028 && r != 0x2029, r >= 0xe000 && r <= 0xfffd && r != 0xfeff, r >= 0x10000:
			continue
		case r == 0x85 || r == 0x2028 || r == 0x2029:
			// YAML 1.1 (and so the library) reads these as line breaks.
			return fmt.Errorf("line %d: %U is a line break to YAML 1.1; write it as an escape in a double-quoted value", 1+strings.Count(src[:i], "\n"), r)
		}
		return fmt.Errorf("line %d: control character %U is not allowed; write it as an escape in a double-quoted value", 1+strings.Count(src[:i], "\n"), r)
	}
	return nil
}

func (p *yamlParser) errorf(format string, args ...any) error {
	return fmt.Errorf("line %d: "+format, append([]any{p.line}, args...)...)
}

// cur is the byte at pos, 0 at the end.
func (p *yamlParser) cur() byte { return p.at(p.pos) }

func (p *yamlParser) at(i int) byte {
	if i < len(p.src) {
		return p.src[i]
	}
	return 0
}

func (p *yamlParser) col() int { return p.pos - p.lineStart }

func (p *yamlParser) eof() bool { return p.pos >= len(p.src) }

func isBlank(c byte) bool { return c == ' ' || c == '\t' }

// isBlankEnd: c ends a token: a blank, a line break or the end.
func isBlankEnd(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == 0 }

func isFlowIndicator(c byte) bool {
	return c == ',' || c == '[' || c == ']' || c == '{' || c == '}'
}

func (p *yamlParser) newline() {
	p.pos++
	p.line++
	p.lineStart = p.pos
}

// skipLine moves to the line break (past a comment).
func (p *yamlParser) skipLine() {
	for !p.eof() && p.cur() != '\n' {
		p.pos++
	}
}

func (p *yamlParser) tabError() error {
	return p.errorf("a tab indents this line; YAML indents with spaces")
}

func (p *yamlParser) complexKeyError() error {
	return p.errorf("complex keys (? key) are not supported; write key: value")
}

// enter counts a level of nesting; the caller defers p.depth--.
func (p *yamlParser) enter() error {
	if p.depth++; p.depth > maxYAMLDepth {
		return p.errorf("nested deeper than %d levels", maxYAMLDepth)
	}
	return nil
}

func (p *yamlParser) skipBlanks() {
	for isBlank(p.cur()) {
		p.pos++
	}
}

// atComment: a # that starts a comment, i.e. follows a blank or starts
// the line.
func (p *yamlParser) atComment() bool {
	return p.cur() == '#' && (p.pos == p.lineStart || isBlank(p.at(p.pos-1)))
}

// atDocMarker: "---" or "..." at the start of a line, alone or before a
// blank.
func (p *yamlParser) atDocMarker() bool {
	if p.col() != 0 || len(p.src)-p.pos < 3 {
		return false
	}
	m := p.src[p.pos : p.pos+3]
	return (m == "---" || m == "...") && isBlankEnd(p.at(p.pos+3))
}

// endOfLine consumes blanks and a comment up to the line break, and fails
// on anything else: what follows a value on its line.
func (p *yamlParser) endOfLine() error {
	p.skipBlanks()
	if p.atComment() {
		p.skipLine()
	}
	if !p.eof() && p.cur() != '\n' {
		return p.errorf("unexpected %q after the value", p.restOfLine())
	}
	return nil
}

func (p *yamlParser) restOfLine() string {
	end := strings.IndexByte(p.src[p.pos:], '\n')
	if end < 0 {
		end = len(p.src) - p.pos
	}
	return strings.TrimSpace(p.src[p.pos : p.pos+end])
}

// nextContent moves from the end of a line past empty and comment lines to
// the first byte of the next content, whose column is its indentation.
// YAML indents with spaces: a tab there is refused.
func (p *yamlParser) nextContent() error {
	for !p.eof() {
		if p.cur() == '\n' {
			p.newline()
		}
		for p.cur() == ' ' {
			p.pos++
		}
		switch c := p.cur(); {
		case c == '\t':
			return p.tabError()
		case c == '#':
			p.skipLine()
		case c != '\n' && c != 0:
			return nil
		}
	}
	return nil
}

// settle ends a value: the rest of its line, then the next content.
func (p *yamlParser) settle() error {
	if err := p.endOfLine(); err != nil {
		return err
	}
	return p.nextContent()
}

func (p *yamlParser) document() (*yamlNode, error) {
	directive := false
	for {
		if err := p.nextContent(); err != nil {
			return nil, err
		}
		if p.col() != 0 || p.cur() != '%' {
			break
		}
		if f := strings.Fields(p.restOfLine()); len(f) < 2 || f[0] != "%YAML" || (f[1] != "1.1" && f[1] != "1.2") || len(f) > 2 && f[2][0] != '#' {
			return nil, p.errorf("unsupported directive %q; accepted: %%YAML 1.1 or %%YAML 1.2", p.restOfLine())
		}
		directive = true
		p.skipLine()
	}
	// On the line of ---, as after "key:", no collection starts.
	ctx := ctxDocument
	switch {
	case p.atDocMarker() && p.src[p.pos] == '-':
		p.pos += 3
		ctx = ctxMapValue
	case directive:
		return nil, p.errorf("a %%directive must be followed by ---")
	case p.atDocMarker():
		return nil, p.errorf("... ends a document that has not started")
	}
	var root *yamlNode
	if p.atDocMarker() || p.eof() {
		root = p.scalar("", true)
	} else {
		var err error
		if root, err = p.node(-1, ctx); err != nil {
			return nil, err
		}
	}
	if !p.eof() && !p.atDocMarker() {
		return nil, p.errorf("expected the end of the document (is %q indented wrong?)", p.restOfLine())
	}
	return root, nil
}

func (p *yamlParser) scalar(text string, plain bool) *yamlNode {
	p.nodes++
	return &yamlNode{kind: yamlScalar, line: p.line, text: text, plain: plain}
}

// nodeContext is where a block node starts: it decides which collections
// may open on the line of the indicator before it.
type nodeContext uint8

const (
	ctxDocument nodeContext = iota // a line's first content: any node may start
	ctxSeqEntry                    // after "- ": a mapping or a list may start here
	ctxMapValue                    // after "key:" or ---: neither may start on this line
)

// node reads a block node that starts at pos, right after its indicator
// (or at the document's first content). indent is the indentation of the
// collection holding it: the node's lines are indented more.
func (p *yamlParser) node(indent int, ctx nodeContext) (*yamlNode, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	line := p.line
	p.skipBlanks()
	anchor, str, err := p.props()
	if err != nil {
		return nil, err
	}
	hasProps := anchor != "" || str
	var n *yamlNode
	if p.eof() || p.cur() == '\n' || p.atComment() {
		// The value is on the next lines, or empty.
		if err := p.settle(); err != nil {
			return nil, err
		}
		col := p.col()
		switch {
		case col > indent && !p.atDocMarker() && !p.eof():
			n, err = p.block(col, indent, ctxDocument, hasProps)
		case col == indent && ctx == ctxMapValue && p.atSeqEntry():
			n, err = p.sequence(col, true)
		default:
			n = p.scalar("", true)
			n.line = line
		}
	} else {
		if hasProps && ctx != ctxMapValue && (p.atKey() || p.atSeqEntry()) {
			return nil, p.errorf("an anchor or a tag before a key or a list item is not supported; put it on the line above")
		}
		n, err = p.block(p.col(), indent, ctx, hasProps)
	}
	if err != nil {
		return nil, err
	}
	return p.withProps(n, anchor, str)
}

// withProps gives n the properties read before it.
func (p *yamlParser) withProps(n *yamlNode, anchor string, str bool) (*yamlNode, error) {
	if str {
		if n.kind != yamlScalar {
			return nil, fmt.Errorf("line %d: !!str is for a value, not a list or a mapping", n.line)
		}
		n.plain = false
	}
	if anchor != "" && p.anchors[anchor] == nil {
		p.anchors[anchor] = n
	}
	return n, nil
}

// block reads the node at pos, on column col: a collection opens only
// where ctx allows it (a line of its own counts as ctxDocument). props:
// an anchor or a tag was read for it, which an alias cannot take.
func (p *yamlParser) block(col, indent int, ctx nodeContext, props bool) (*yamlNode, error) {
	switch c := p.cur(); {
	case ctx != ctxMapValue && p.atSeqEntry():
		return p.sequence(col, false)
	case c == '?' && isBlankEnd(p.at(p.pos+1)):
		return nil, p.complexKeyError()
	case ctx != ctxMapValue && p.atKey():
		return p.mapping(col)
	case c == '*' && props:
		return nil, p.errorf("an alias cannot have an anchor or a tag")
	case c == '*':
		return p.endsItsLine(p.alias, "an alias as a key is not supported", false)
	case c == '&' || c == '!':
		return nil, p.errorf("an anchor or a tag on a line of its own is not supported; put it after the key")
	case c == '|' || c == '>':
		return p.blockScalar(indent)
	case c == '[' || c == '{':
		return p.endsItsLine(p.flow, "a key must be a plain or quoted scalar", false)
	case c == '"' || c == '\'':
		return p.endsItsLine(p.quoted, "mapping values are not allowed in this context (quote a value that holds \": \")", true)
	}
	return p.plain(indent, false)
}

// endsItsLine reads a value with read (an alias, a [ ] or { }, a quoted
// scalar) whose line must end after it. A ':' after it (with a blank
// after the ':', for a quoted value) would make it a key: keyErr.
func (p *yamlParser) endsItsLine(read func() (*yamlNode, error), keyErr string, colonThenBlank bool) (*yamlNode, error) {
	n, err := read()
	if err != nil {
		return nil, err
	}
	if p.skipBlanks(); p.cur() == ':' && (!colonThenBlank || isBlankEnd(p.at(p.pos+1))) {
		return nil, p.errorf("%s", keyErr)
	}
	return n, p.settle()
}

// atSeqEntry: "- " or a "-" that ends the line.
func (p *yamlParser) atSeqEntry() bool {
	return p.cur() == '-' && isBlankEnd(p.at(p.pos+1))
}

// atKey: the line from pos holds an implicit key: a quoted or plain
// scalar on this line, then ':' and a blank or the line's end.
func (p *yamlParser) atKey() bool {
	i := p.pos
	switch c := p.at(i); {
	case c == '"' || c == '\'':
		for i++; i < len(p.src) && p.src[i] != '\n'; i++ {
			if p.src[i] == '\\' && c == '"' && p.at(i+1) != '\n' {
				i++
				continue
			}
			if p.src[i] == c {
				if c == '\'' && p.at(i+1) == '\'' {
					i++
					continue
				}
				break
			}
		}
		if i >= len(p.src) || p.src[i] != c {
			return false
		}
		for i++; isBlank(p.at(i)); i++ {
		}
		return p.at(i) == ':' && isBlankEnd(p.at(i+1)) && i-p.pos <= maxKeyLen
	case !canStartPlain(c, p.at(i+1), false):
		return false
	}
	for ; i < len(p.src) && p.src[i] != '\n'; i++ {
		switch {
		case p.src[i] == ':' && isBlankEnd(p.at(i+1)):
			return i-p.pos <= maxKeyLen
		case p.src[i] == '#' && i > p.pos && isBlank(p.src[i-1]):
			return false
		}
	}
	return false
}

// canStartPlain: c (followed by next) may begin a plain scalar.
func canStartPlain(c, next byte, flow bool) bool {
	switch c {
	case 0, ' ', '\t', '\n', ',', '[', ']', '{', '}', '#', '&', '*', '!', '|', '>', '\'', '"', '%', '@', '`':
		return false
	case '-':
		return !isBlankEnd(next)
	case '?', ':':
		return !flow && !isBlankEnd(next)
	}
	return true
}

// mapping reads a block mapping whose first key is at pos, on column col.
func (p *yamlParser) mapping(col int) (*yamlNode, error) {
	n := &yamlNode{kind: yamlMap, line: p.line}
	p.nodes++
	seen := map[string]int{}
	for {
		if p.cur() == '?' && isBlankEnd(p.at(p.pos+1)) {
			return nil, p.complexKeyError()
		}
		if p.cur() == '&' || p.cur() == '*' || p.cur() == '!' {
			return nil, p.errorf("anchors, aliases and tags on keys are not supported")
		}
		if !p.atKey() {
			if p.atSeqEntry() {
				return nil, p.errorf("a list item where a key was expected (is it indented wrong?)")
			}
			return nil, p.errorf("expected a key (key: value), found %q", p.restOfLine())
		}
		k, err := p.key()
		if err != nil {
			return nil, err
		}
		if at, dup := seen[k.text]; dup {
			return nil, p.errorf("mapping key %q already defined at line %d", k.text, at)
		}
		seen[k.text] = k.line
		p.skipBlanks()
		p.pos++ // the ':' atKey saw
		v, err := p.node(col, ctxMapValue)
		if err != nil {
			return nil, err
		}
		n.items = append(n.items, k, v)
		switch {
		case p.eof() || p.atDocMarker() || p.col() < col:
			return n, nil
		case p.col() > col:
			return nil, p.errorf("this line is indented more than the key above it, and is not part of its value")
		}
	}
}

// key reads an implicit key (a scalar on one line) up to its ':'.
func (p *yamlParser) key() (*yamlNode, error) {
	if c := p.cur(); c == '"' || c == '\'' {
		return p.quoted()
	}
	start := p.pos
	for !(p.cur() == ':' && isBlankEnd(p.at(p.pos+1))) {
		p.pos++
	}
	return p.scalar(strings.TrimRight(p.src[start:p.pos], " \t"), true), nil
}

// sequence reads a block sequence whose first "-" is at pos, on column
// col. underKey: it sits at its key's indentation (key:\n- a), so a key on
// col ends it instead of being an error.
func (p *yamlParser) sequence(col int, underKey bool) (*yamlNode, error) {
	n := &yamlNode{kind: yamlSeq, line: p.line}
	p.nodes++
	for {
		p.pos++ // the '-'
		if err := p.spacesAfterIndicator(); err != nil {
			return nil, err
		}
		item, err := p.node(col, ctxSeqEntry)
		if err != nil {
			return nil, err
		}
		n.items = append(n.items, item)
		switch {
		case p.eof() || p.atDocMarker() || p.col() < col:
			return n, nil
		case p.col() > col:
			return nil, p.errorf("this line is indented more than the list item above it, and is not part of it")
		case !p.atSeqEntry():
			if underKey {
				return n, nil
			}
			return nil, p.errorf("expected a list item (- ...) at this indentation, found %q", p.restOfLine())
		}
	}
}

// spacesAfterIndicator skips the spaces after a block "-". A tab there is
// refused, as the library refuses it: what follows may be a key, whose
// indentation a tab would make ambiguous.
func (p *yamlParser) spacesAfterIndicator() error {
	for p.cur() == ' ' {
		p.pos++
	}
	if p.cur() == '\t' {
		return p.errorf("a tab after '-'; use spaces")
	}
	return nil
}

// props reads a node's properties: an anchor (&name) and a tag, in either
// order. The tag read is !!str, which keeps a scalar a string (as quotes
// do); other tags are refused.
func (p *yamlParser) props() (anchor string, str bool, err error) {
	for {
		switch p.cur() {
		case '&':
			if anchor != "" {
				return "", false, p.errorf("a value has at most one anchor")
			}
			if anchor, err = p.anchorName("an anchor (&name)"); err != nil {
				return "", false, err
			}
			// Pending until its value is read: an alias inside it is refused.
			p.anchors[anchor] = nil
		case '!':
			start := p.pos
			for !isBlankEnd(p.cur()) {
				p.pos++
			}
			if str {
				return "", false, p.errorf("a value has at most one tag")
			}
			if tag := p.src[start:p.pos]; tag != "!!str" {
				return "", false, p.errorf("the tag %s is not supported (only !!str is); quote a value to keep it a string", tag)
			}
			str = true
		default:
			return anchor, str, nil
		}
		p.skipBlanks()
	}
}

// anchorName reads the name after & or * (libyaml's alphabet); what says
// what a value starting with that character is.
func (p *yamlParser) anchorName(what string) (string, error) {
	p.pos++
	start := p.pos
	for c := p.cur(); c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '-'; c = p.cur() {
		p.pos++
	}
	if p.pos == start || !isBlankEnd(p.cur()) && !strings.ContainsRune("?:,]}%@`", rune(p.cur())) {
		return "", p.errorf("a value starting with %c is %s, a name of letters, digits, - and _; quote a value that starts with %c", p.src[start-1], what, p.src[start-1])
	}
	return p.src[start:p.pos], nil
}

func (p *yamlParser) alias() (*yamlNode, error) {
	name, err := p.anchorName("an alias (*name)")
	if err != nil {
		return nil, err
	}
	n, ok := p.anchors[name]
	switch {
	case !ok:
		return nil, p.errorf("unknown anchor '%s' referenced", name)
	case n == nil:
		return nil, p.errorf("anchor '%s' value contains itself", name)
	}
	return n, nil
}

// plain reads a plain scalar, folding the lines that continue it: in
// block context those indented more than indent, in flow context any line
// until an indicator.
func (p *yamlParser) plain(indent int, flow bool) (*yamlNode, error) {
	if !canStartPlain(p.cur(), p.at(p.pos+1), flow) {
		if p.atSeqEntry() {
			return nil, p.errorf("block sequence entries are not allowed in this context")
		}
		return nil, p.errorf("a value cannot start with %q; quote it", p.cur())
	}
	line := p.line
	var b strings.Builder
	for {
		start := p.pos
		for !p.eof() && p.cur() != '\n' {
			c := p.cur()
			if c == ':' && isBlankEnd(p.at(p.pos+1)) {
				if flow {
					break
				}
				return nil, p.errorf("mapping values are not allowed in this context (quote a value that holds \": \")")
			}
			if p.atComment() || flow && (isFlowIndicator(c) || c == '?') {
				break
			}
			p.pos++
		}
		b.WriteString(strings.TrimRight(p.src[start:p.pos], " \t"))
		if p.cur() != '\n' {
			break
		}
		// A continuation line?
		save, saveLine, saveStart := p.pos, p.line, p.lineStart
		breaks := 0
		for p.cur() == '\n' {
			p.newline()
			breaks++
			for isBlank(p.cur()) {
				if p.cur() == '\t' && !flow && p.col() <= indent {
					return nil, p.tabError()
				}
				p.pos++
			}
		}
		if p.eof() || p.atComment() || p.atDocMarker() || !flow && p.col() <= indent ||
			flow && (isFlowIndicator(p.cur()) || p.cur() == '?' || p.cur() == ':' && isBlankEnd(p.at(p.pos+1))) {
			p.pos, p.line, p.lineStart = save, saveLine, saveStart
			break
		}
		fold(&b, breaks)
	}
	n := p.scalar(b.String(), true)
	n.line = line
	if flow {
		return n, nil
	}
	return n, p.settle()
}

// fold writes what YAML's line folding makes of breaks line breaks
// between two lines of a scalar: one is a space, each further one (an
// empty line) a line break.
func fold(b *strings.Builder, breaks int) {
	if breaks == 1 {
		b.WriteByte(' ')
	} else {
		b.WriteString(strings.Repeat("\n", breaks-1))
	}
}

// quoted reads a 'single' or "double" quoted scalar, which may span lines.
func (p *yamlParser) quoted() (*yamlNode, error) {
	q := p.cur()
	line := p.line
	p.pos++
	var b strings.Builder
	for {
		if p.eof() {
			return nil, fmt.Errorf("line %d: a quoted value is not closed", line)
		}
		switch c := p.cur(); {
		case c == q && q == '\'' && p.at(p.pos+1) == '\'':
			b.WriteByte('\'')
			p.pos += 2
		case c == q:
			p.pos++
			n := p.scalar(b.String(), false)
			n.line = line
			return n, nil
		case c == '\\' && q == '"':
			if p.at(p.pos+1) == '\n' {
				// An escaped line break joins the lines; each empty
				// line after it is a line break.
				p.pos++
				p.newline()
				for p.skipBlanks(); p.cur() == '\n'; p.skipBlanks() {
					b.WriteByte('\n')
					p.newline()
				}
				if p.atDocMarker() {
					return nil, p.errorf("a document marker inside a quoted value")
				}
				continue
			}
			if err := p.escape(&b); err != nil {
				return nil, err
			}
		case c == '\n' || isBlank(c):
			// Blanks before a line break are dropped; the break folds.
			start := p.pos
			p.skipBlanks()
			if p.cur() != '\n' {
				b.WriteString(p.src[start:p.pos])
				continue
			}
			breaks := 0
			for p.cur() == '\n' {
				p.newline()
				breaks++
				if p.atDocMarker() {
					return nil, p.errorf("a document marker inside a quoted value")
				}
				p.skipBlanks()
			}
			fold(&b, breaks)
		default:
			b.WriteByte(c)
			p.pos++
		}
	}
}

// escape reads one \-escape of a double-quoted scalar.
func (p *yamlParser) escape(b *strings.Builder) error {
	c := p.at(p.pos + 1)
	if i := strings.IndexByte("0abt\tnvfre \"'\\N_LP", c); i >= 0 && c != 0 {
		b.WriteString([]string{"\x00", "\a", "\b", "\t", "\t", "\n", "\v", "\f", "\r", "\x1b", " ", "\"", "'", "\\",
			"\u0085", "\u00a0", "\u2028", "\u2029"}[i])
		p.pos += 2
		return nil
	}
	digits := 0
	switch c {
	case 'x':
		digits = 2
	case 'u':
		digits = 4
	case 'U':
		digits = 8
	}
	if digits == 0 || p.pos+2+digits > len(p.src) {
		return p.errorf("unknown escape %q in a double-quoted value", p.src[p.pos:min(p.pos+2, len(p.src))])
	}
	r, err := strconv.ParseUint(p.src[p.pos+2:p.pos+2+digits], 16, 32)
	if err != nil || r > utf8.MaxRune || r >= 0xd800 && r < 0xe000 {
		return p.errorf("invalid escape %q in a double-quoted value", p.src[p.pos:p.pos+2+digits])
	}
	b.WriteRune(rune(r))
	p.pos += 2 + digits
	return nil
}

// blockScalar reads a literal (|) or folded (>) block scalar; indent is
// the indentation of the collection holding it.
func (p *yamlParser) blockScalar(indent int) (*yamlNode, error) {
	line := p.line
	folded := p.cur() == '>'
	p.pos++
	chomp, explicit := byte(0), 0
	for i := 0; i < 2; i++ {
		switch c := p.cur(); {
		case (c == '+' || c == '-') && chomp == 0:
			chomp = c
			p.pos++
		case c >= '1' && c <= '9' && explicit == 0:
			explicit = int(c - '0')
			p.pos++
		}
	}
	if !isBlankEnd(p.cur()) {
		return nil, p.errorf("after | or >: only +, -, an indentation digit 1-9 and a comment")
	}
	if err := p.endOfLine(); err != nil {
		return nil, err
	}
	contentIndent := 0
	if explicit > 0 {
		contentIndent = explicit
		if indent >= 0 {
			contentIndent = indent + explicit
		}
	}
	var b strings.Builder
	var trailing strings.Builder
	if !p.eof() {
		p.newline()
		if err := p.blockBreaks(&contentIndent, indent, &trailing); err != nil {
			return nil, err
		}
	}
	leadingBreak, leadingBlank := "", false
	for p.col() == contentIndent && !p.eof() {
		trailingBlank := isBlank(p.cur())
		if folded && leadingBreak == "\n" && !leadingBlank && !trailingBlank {
			if trailing.Len() == 0 {
				b.WriteByte(' ')
			}
		} else {
			b.WriteString(leadingBreak)
		}
		leadingBreak = ""
		b.WriteString(trailing.String())
		trailing.Reset()
		leadingBlank = isBlank(p.cur())
		start := p.pos
		p.skipLine()
		b.WriteString(p.src[start:p.pos])
		if p.eof() {
			break
		}
		p.newline()
		leadingBreak = "\n"
		if err := p.blockBreaks(&contentIndent, indent, &trailing); err != nil {
			return nil, err
		}
	}
	if chomp != '-' {
		b.WriteString(leadingBreak)
	}
	if chomp == '+' {
		b.WriteString(trailing.String())
	}
	n := p.scalar(b.String(), false)
	n.line = line
	// The scalar ended at a line indented less, or at the end.
	p.skipBlanks()
	if p.eof() || p.cur() == '\n' || p.atComment() {
		return n, p.settle()
	}
	return n, nil
}

// blockBreaks reads, at the start of a line, the indentation and the empty
// lines before a block scalar's next line of content, into breaks; with no
// indentation indicator, the first such line sets the indentation.
func (p *yamlParser) blockBreaks(contentIndent *int, indent int, breaks *strings.Builder) error {
	maxIndent := 0
	for {
		for (*contentIndent == 0 || p.col() < *contentIndent) && p.cur() == ' ' {
			p.pos++
		}
		maxIndent = max(maxIndent, p.col())
		if (*contentIndent == 0 || p.col() < *contentIndent) && p.cur() == '\t' {
			return p.tabError()
		}
		if p.cur() != '\n' {
			break
		}
		p.newline()
		breaks.WriteByte('\n')
	}
	if *contentIndent == 0 {
		*contentIndent = max(maxIndent, indent+1, 1)
	}
	return nil
}

// flow reads a [sequence] or {mapping}, which may span lines.
func (p *yamlParser) flow() (*yamlNode, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	isMap := p.cur() == '{'
	closer := byte(']')
	n := &yamlNode{kind: yamlSeq, line: p.line}
	if isMap {
		closer, n.kind = '}', yamlMap
	}
	p.nodes++
	p.pos++
	seen := map[string]int{}
	for {
		if err := p.flowSpace(); err != nil {
			return nil, err
		}
		if p.cur() == closer {
			p.pos++
			return n, nil
		}
		if p.eof() {
			return nil, fmt.Errorf("line %d: this %c is not closed", n.line, n.opener())
		}
		if isMap {
			keyStart := p.pos
			k, err := p.flowKey()
			if err != nil {
				return nil, err
			}
			if at, dup := seen[k.text]; dup {
				return nil, p.errorf("mapping key %q already defined at line %d", k.text, at)
			}
			seen[k.text] = k.line
			if err := p.flowSpace(); err != nil {
				return nil, err
			}
			v := p.scalar("", true)
			if p.cur() == ':' && (p.line != k.line || p.pos-keyStart > maxKeyLen) {
				return nil, p.errorf("a key and its ':' must be on one line, at most %d characters apart", maxKeyLen)
			}
			if p.cur() == ':' {
				p.pos++
				if err := p.flowSpace(); err != nil {
					return nil, err
				}
				if p.eof() {
					return nil, fmt.Errorf("line %d: this %c is not closed", n.line, n.opener())
				}
				if c := p.cur(); c != ',' && c != closer {
					if v, err = p.flowValue(); err != nil {
						return nil, err
					}
				}
			}
			n.items = append(n.items, k, v)
		} else {
			v, err := p.flowValue()
			if err != nil {
				return nil, err
			}
			n.items = append(n.items, v)
		}
		if err := p.flowSpace(); err != nil {
			return nil, err
		}
		switch c := p.cur(); {
		case c == ',':
			p.pos++
		case c == closer:
		case p.eof():
			return nil, fmt.Errorf("line %d: this %c is not closed", n.line, n.opener())
		case c == ':' && !isMap:
			return nil, p.flowError(n, "expected ',' or ']', found ':' (a key: value pair inside [ ] is written {key: value})")
		case c == '?':
			return nil, p.flowError(n, "a '?' ends a plain value inside [ ] or { }; quote the value")
		default:
			return nil, p.flowError(n, fmt.Sprintf("expected ',' or '%c', found %q", closer, c))
		}
	}
}

// flowError says where the [ or { being read opened, when on another line.
func (p *yamlParser) flowError(n *yamlNode, msg string) error {
	if n.line != p.line {
		msg += fmt.Sprintf(" (in the %c of line %d)", n.opener(), n.line)
	}
	return p.errorf("%s", msg)
}

// flowSpace skips blanks, line breaks and comments inside [ ] and { }.
func (p *yamlParser) flowSpace() error {
	for {
		switch {
		case isBlank(p.cur()):
			p.pos++
		case p.cur() == '\n':
			p.newline()
			if p.atDocMarker() {
				return p.errorf("a document marker inside [ ] or { }")
			}
		case p.atComment():
			p.skipLine()
		default:
			return nil
		}
	}
}

func (p *yamlParser) flowKey() (*yamlNode, error) {
	switch c := p.cur(); {
	case c == '"' || c == '\'':
		return p.quoted()
	case c == '[' || c == '{':
		return nil, p.errorf("a key must be a plain or quoted scalar")
	case c == '&' || c == '*' || c == '!':
		return nil, p.errorf("anchors, aliases and tags on keys are not supported")
	case c == '?' && isBlankEnd(p.at(p.pos+1)):
		return nil, p.complexKeyError()
	}
	return p.plain(0, true)
}

func (p *yamlParser) flowValue() (*yamlNode, error) {
	anchor, str, err := p.props()
	if err != nil {
		return nil, err
	}
	if err := p.flowSpace(); err != nil {
		return nil, err
	}
	var n *yamlNode
	switch c := p.cur(); {
	case p.eof():
		return nil, p.errorf("the file ends inside [ ] or { }")
	case c == '*':
		if anchor != "" || str {
			return nil, p.errorf("an alias cannot have an anchor or a tag")
		}
		n, err = p.alias()
	case c == '[' || c == '{':
		n, err = p.flow()
	case c == '"' || c == '\'':
		n, err = p.quoted()
	case (anchor != "" || str) && (c == ',' || c == ']' || c == '}'):
		n = p.scalar("", true)
	case c == '|' || c == '>':
		return nil, p.errorf("a block scalar (| or >) cannot be inside [ ] or { }")
	default:
		n, err = p.plain(0, true)
	}
	if err != nil {
		return nil, err
	}
	return p.withProps(n, anchor, str)
}

// yamlTree turns parsed nodes into the process file tree, expanding
// aliases and merge keys within budget values.
type yamlTree struct{ budget int }

func (t *yamlTree) tree(n *yamlNode, at *yamlPath) (any, error) {
	if t.budget--; t.budget < 0 {
		return nil, fmt.Errorf("line %d: aliases expand to more than %d values", n.line, maxAliasValues)
	}
	switch n.kind {
	case yamlSeq:
		out := make([]any, len(n.items))
		for i, item := range n.items {
			v, err := t.tree(item, &yamlPath{up: at, index: i})
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	case yamlMap:
		return t.mapping(n, at)
	}
	if n.plain {
		return resolvePlain(n.text), nil
	}
	return n.text, nil
}

// mapping converts a mapping; keys must be strings. A merge key's mappings
// add the keys the mapping does not have, the first one listed winning;
// they count against the budget as aliases do.
func (t *yamlTree) mapping(n *yamlNode, at *yamlPath) (map[string]any, error) {
	out := make(map[string]any, len(n.items)/2)
	var merge *yamlNode
	for i := 0; i < len(n.items); i += 2 {
		k, v := n.items[i], n.items[i+1]
		if k.plain && k.text == "<<" {
			merge = v
			continue
		}
		if _, ok := resolvePlain(k.text).(string); k.plain && !ok {
			where := at.String()
			if where == "" {
				where = "the top level"
			}
			return nil, fmt.Errorf("line %d: %s: key %s is not a string", k.line, where, k.text)
		}
		val, err := t.tree(v, &yamlPath{up: at, key: k.text, index: -1})
		if err != nil {
			return nil, err
		}
		out[k.text] = val
	}
	if merge == nil {
		return out, nil
	}
	sources := []*yamlNode{merge}
	if merge.kind == yamlSeq {
		sources = merge.items
	}
	for _, src := range sources {
		if src.kind != yamlMap {
			return nil, fmt.Errorf("line %d: <<: merges a mapping or a list of mappings", merge.line)
		}
		m, err := t.tree(src, at)
		if err != nil {
			return nil, err
		}
		for k, v := range m.(map[string]any) {
			if _, ok := out[k]; !ok {
				out[k] = v
			}
		}
	}
	return out, nil
}

// yamlPath is where a value is, spelled out only for an error message
// (apps[0].env): building it for every value would cost a file of long
// keys nested deep the square of its size.
type yamlPath struct {
	up    *yamlPath
	key   string
	index int // -1 for a key
}

func (p *yamlPath) String() string {
	if p == nil {
		return ""
	}
	if p.index >= 0 {
		return fmt.Sprintf("%s[%d]", p.up, p.index)
	}
	key := p.key
	if strings.ContainsFunc(key, func(r rune) bool { return !strconv.IsPrint(r) }) {
		key = strconv.Quote(key)
	}
	return join(p.up.String(), key)
}

// resolvePlain gives a plain scalar the value go.yaml.in/yaml/v3 gives it
// in an interface{}, as a tree value: null, a bool, a json.Number, or the
// text (a timestamp stays text).
func resolvePlain(s string) any {
	switch s {
	case "", "~", "null", "Null", "NULL":
		return nil
	case "true", "True", "TRUE":
		return true
	case "false", "False", "FALSE":
		return false
	case ".nan", ".NaN", ".NAN":
		return json.Number("NaN")
	case ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF":
		return json.Number("+Inf")
	case "-.inf", "-.Inf", "-.INF":
		return json.Number("-Inf")
	}
	switch c := s[0]; {
	case c == '.':
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			return floatNumber(f)
		}
	case c == '+' || c == '-' || c >= '0' && c <= '9':
		if v, ok := resolveNumber(strings.ReplaceAll(s, "_", "")); ok {
			return v
		}
	}
	return s
}

// resolveNumber: the library's integers (Go's literal forms, then binary
// and octal with a sign) and floats.
func resolveNumber(s string) (json.Number, bool) {
	if i, err := strconv.ParseInt(s, 0, 64); err == nil {
		return json.Number(strconv.FormatInt(i, 10)), true
	}
	if u, err := strconv.ParseUint(s, 0, 64); err == nil {
		return json.Number(strconv.FormatUint(u, 10)), true
	}
	if isYAMLFloat(s) {
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			return floatNumber(f), true
		}
	}
	for _, prefix := range []struct {
		p    string
		base int
	}{{"0b", 2}, {"0o", 8}} {
		switch {
		case strings.HasPrefix(s, prefix.p):
			if i, err := strconv.ParseInt(s[2:], prefix.base, 64); err == nil {
				return json.Number(strconv.FormatInt(i, 10)), true
			}
			if u, err := strconv.ParseUint(s[2:], prefix.base, 64); err == nil {
				return json.Number(strconv.FormatUint(u, 10)), true
			}
		case strings.HasPrefix(s, "-"+prefix.p):
			if i, err := strconv.ParseInt("-"+s[3:], prefix.base, 64); err == nil {
				return json.Number(strconv.FormatInt(i, 10)), true
			}
		}
	}
	return "", false
}

// floatNumber spells a float as the tree did before: 1e+21, +Inf.
func floatNumber(f float64) json.Number {
	return json.Number(strconv.FormatFloat(f, 'g', -1, 64))
}

// isYAMLFloat: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
func isYAMLFloat(s string) bool {
	i := 0
	digits := func() int {
		n := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	} else {
		if digits() == 0 {
			return false
		}
		if i < len(s) && s[i] == '.' {
			i++
			digits()
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(s)
}
