package milvusfake

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode"

	"github.com/milvus-io/milvus-proto/go-api/v2/schemapb"
)

// The fake understands the subset of Milvus's boolean expression language that a client of
// scalar-filtered vector search needs:
//
//	expr    := or
//	or      := and { ("or" | "||") and }
//	and     := not { ("and" | "&&") not }
//	not     := ("not" | "!") not | "(" expr ")" | compare
//	compare := field ("==" | "!=" | "<" | "<=" | ">" | ">=") literal
//	         | literal ("==" | "!=" | "<" | "<=" | ">" | ">=") field
//	         | field ["not"] "in" "[" [literal {"," literal}] "]"
//	literal := string | integer | float | "true" | "false"
//
// Strings are double- or single-quoted with C escapes, as in Milvus's grammar. Fields are
// type-checked against the collection schema when the expression is parsed, as Milvus's planner
// does, so a backend that compares a VarChar with a number gets an error here too. Anything
// outside the subset (JSON paths, arithmetic, LIKE, templates) is rejected with an error rather
// than guessed at.

// predicate is a parsed expression bound to a schema.
type predicate func(values map[string]any) bool

type tokenKind int

const (
	tokenEnd tokenKind = iota
	tokenIdent
	tokenString
	tokenNumber
	tokenPunct
)

type token struct {
	kind tokenKind
	text string
	// value is the decoded string literal for tokenString.
	value string
	pos   int
}

func tokenize(input string) ([]token, error) {
	var tokens []token
	for i := 0; i < len(input); {
		c := input[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '"' || c == '\'':
			end, value, err := scanString(input, i)
			if err != nil {
				return nil, err
			}
			tokens = append(tokens, token{kind: tokenString, text: input[i:end], value: value, pos: i})
			i = end
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(input) && input[i+1] >= '0' && input[i+1] <= '9':
			start := i
			for i < len(input) && (input[i] >= '0' && input[i] <= '9' || input[i] == '.' || input[i] == 'e' || input[i] == 'E' ||
				(input[i] == '-' || input[i] == '+') && (input[i-1] == 'e' || input[i-1] == 'E')) {
				i++
			}
			tokens = append(tokens, token{kind: tokenNumber, text: input[start:i], pos: start})
		case c == '_' || unicode.IsLetter(rune(c)):
			start := i
			for i < len(input) && (input[i] == '_' || input[i] >= '0' && input[i] <= '9' || unicode.IsLetter(rune(input[i]))) {
				i++
			}
			tokens = append(tokens, token{kind: tokenIdent, text: input[start:i], pos: start})
		default:
			two := ""
			if i+1 < len(input) {
				two = input[i : i+2]
			}
			switch two {
			case "==", "!=", "<=", ">=", "&&", "||":
				tokens = append(tokens, token{kind: tokenPunct, text: two, pos: i})
				i += 2
				continue
			}
			switch c {
			case '(', ')', '[', ']', '{', '}', ',', '<', '>', '!', '-', '+':
				tokens = append(tokens, token{kind: tokenPunct, text: string(c), pos: i})
				i++
			default:
				return nil, fmt.Errorf("unexpected character %q at offset %d", c, i)
			}
		}
	}
	return append(tokens, token{kind: tokenEnd, pos: len(input)}), nil
}

// scanString reads the quoted literal starting at input[start] and returns the offset after it
// and its decoded value.
func scanString(input string, start int) (int, string, error) {
	quote := input[start]
	for i := start + 1; i < len(input); i++ {
		switch input[i] {
		case '\\':
			i++
		case '\n', '\r':
			return 0, "", fmt.Errorf("newline in string literal at offset %d", start)
		case quote:
			body := input[start+1 : i]
			if quote == '\'' {
				// Re-quote as a Go double-quoted literal: \' needs no escape there, " does.
				body = strings.ReplaceAll(body, `\'`, `'`)
				var converted strings.Builder
				for j := 0; j < len(body); j++ {
					if body[j] == '\\' && j+1 < len(body) {
						converted.WriteByte(body[j])
						converted.WriteByte(body[j+1])
						j++
						continue
					}
					if body[j] == '"' {
						converted.WriteString(`\"`)
						continue
					}
					converted.WriteByte(body[j])
				}
				body = converted.String()
			}
			value, err := strconv.Unquote(`"` + body + `"`)
			if err != nil {
				return 0, "", fmt.Errorf("bad string literal at offset %d: %w", start, err)
			}
			return i + 1, value, nil
		}
	}
	return 0, "", fmt.Errorf("unterminated string literal at offset %d", start)
}

type parser struct {
	tokens []token
	next   int
	fields map[string]*schemapb.FieldSchema
	input  string
}

// parseExpr parses a filter expression against a collection's fields. An empty expression
// selects every row.
func parseExpr(input string, fields map[string]*schemapb.FieldSchema) (predicate, error) {
	if strings.TrimSpace(input) == "" {
		return func(map[string]any) bool { return true }, nil
	}
	tokens, err := tokenize(input)
	if err != nil {
		return nil, fmt.Errorf("cannot parse expression %q: %w", input, err)
	}
	p := &parser{tokens: tokens, fields: fields, input: input}
	pred, err := p.or()
	if err != nil {
		return nil, fmt.Errorf("cannot parse expression %q: %w", input, err)
	}
	if t := p.peek(); t.kind != tokenEnd {
		return nil, fmt.Errorf("cannot parse expression %q: unexpected %q at offset %d", input, t.text, t.pos)
	}
	return pred, nil
}

func (p *parser) peek() token { return p.tokens[p.next] }

func (p *parser) take() token {
	t := p.tokens[p.next]
	if t.kind != tokenEnd {
		p.next++
	}
	return t
}

func (p *parser) keyword(t token, words ...string) bool {
	if t.kind == tokenIdent {
		for _, word := range words {
			if strings.EqualFold(t.text, word) {
				return true
			}
		}
	}
	return false
}

func (p *parser) or() (predicate, error) {
	left, err := p.and()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		if !(t.kind == tokenPunct && t.text == "||") && !p.keyword(t, "or") {
			return left, nil
		}
		p.take()
		right, err := p.and()
		if err != nil {
			return nil, err
		}
		l := left
		left = func(values map[string]any) bool { return l(values) || right(values) }
	}
}

func (p *parser) and() (predicate, error) {
	left, err := p.not()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		if !(t.kind == tokenPunct && t.text == "&&") && !p.keyword(t, "and") {
			return left, nil
		}
		p.take()
		right, err := p.not()
		if err != nil {
			return nil, err
		}
		l := left
		left = func(values map[string]any) bool { return l(values) && right(values) }
	}
}

func (p *parser) not() (predicate, error) {
	t := p.peek()
	if t.kind == tokenPunct && t.text == "!" || p.keyword(t, "not") {
		p.take()
		inner, err := p.not()
		if err != nil {
			return nil, err
		}
		return func(values map[string]any) bool { return !inner(values) }, nil
	}
	if t.kind == tokenPunct && t.text == "(" {
		p.take()
		inner, err := p.or()
		if err != nil {
			return nil, err
		}
		if closing := p.take(); closing.kind != tokenPunct || closing.text != ")" {
			return nil, fmt.Errorf("expected ) at offset %d", closing.pos)
		}
		return inner, nil
	}
	return p.compare()
}

var comparisons = map[string]bool{"==": true, "!=": true, "<": true, "<=": true, ">": true, ">=": true}

// mirrored turns "literal op field" into "field op' literal".
var mirrored = map[string]string{"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}

func (p *parser) compare() (predicate, error) {
	t := p.peek()
	if t.kind == tokenIdent && !p.keyword(t, "true", "false") {
		field, err := p.field(p.take())
		if err != nil {
			return nil, err
		}
		op := p.take()
		switch {
		case op.kind == tokenPunct && comparisons[op.text]:
			literal, err := p.literal(field)
			if err != nil {
				return nil, err
			}
			return comparison(field.GetName(), op.text, literal), nil
		case p.keyword(op, "in"):
			return p.in(field, false)
		case p.keyword(op, "not"):
			if in := p.take(); !p.keyword(in, "in") {
				return nil, fmt.Errorf("expected in after not at offset %d", in.pos)
			}
			return p.in(field, true)
		default:
			return nil, fmt.Errorf("expected a comparison after %s at offset %d, got %q", field.GetName(), op.pos, op.text)
		}
	}
	// literal op field
	start := p.next
	if _, err := p.rawLiteral(); err != nil {
		return nil, err
	}
	op := p.take()
	if op.kind != tokenPunct || !comparisons[op.text] {
		return nil, fmt.Errorf("expected a comparison operator at offset %d", op.pos)
	}
	fieldToken := p.take()
	if fieldToken.kind != tokenIdent {
		return nil, fmt.Errorf("expected a field name at offset %d", fieldToken.pos)
	}
	field, err := p.field(fieldToken)
	if err != nil {
		return nil, err
	}
	end := p.next
	p.next = start
	literal, err := p.literal(field)
	if err != nil {
		return nil, err
	}
	p.next = end
	return comparison(field.GetName(), mirrored[op.text], literal), nil
}

func (p *parser) field(t token) (*schemapb.FieldSchema, error) {
	field, ok := p.fields[t.text]
	if !ok {
		return nil, fmt.Errorf("field %s not exist", t.text)
	}
	switch field.GetDataType() {
	case schemapb.DataType_Bool, schemapb.DataType_Int8, schemapb.DataType_Int16, schemapb.DataType_Int32,
		schemapb.DataType_Int64, schemapb.DataType_Float, schemapb.DataType_Double, schemapb.DataType_VarChar,
		schemapb.DataType_String:
		return field, nil
	default:
		return nil, fmt.Errorf("field %s of type %s cannot be used in a filter expression", t.text, field.GetDataType())
	}
}

// rawLiteral reads one literal token (with an optional sign) and returns it undecoded.
func (p *parser) rawLiteral() (token, error) {
	t := p.take()
	if t.kind == tokenPunct && (t.text == "-" || t.text == "+") {
		number := p.take()
		if number.kind != tokenNumber {
			return token{}, fmt.Errorf("expected a number after %s at offset %d", t.text, t.pos)
		}
		number.text = t.text + number.text
		return number, nil
	}
	switch {
	case t.kind == tokenString, t.kind == tokenNumber, p.keyword(t, "true", "false"):
		return t, nil
	case t.kind == tokenPunct && t.text == "{":
		return token{}, fmt.Errorf("expression templates are not supported by the fake")
	default:
		return token{}, fmt.Errorf("expected a literal at offset %d, got %q", t.pos, t.text)
	}
}

// literal reads one literal and converts it to field's value type, or fails as Milvus's planner
// does on a type mismatch.
func (p *parser) literal(field *schemapb.FieldSchema) (any, error) {
	t, err := p.rawLiteral()
	if err != nil {
		return nil, err
	}
	mismatch := func() (any, error) {
		return nil, fmt.Errorf("cannot compare field %s of type %s with %s", field.GetName(), field.GetDataType(), t.text)
	}
	switch field.GetDataType() {
	case schemapb.DataType_VarChar, schemapb.DataType_String:
		if t.kind != tokenString {
			return mismatch()
		}
		return t.value, nil
	case schemapb.DataType_Bool:
		if !p.keyword(t, "true", "false") {
			return mismatch()
		}
		return strings.EqualFold(t.text, "true"), nil
	case schemapb.DataType_Float, schemapb.DataType_Double:
		if t.kind != tokenNumber {
			return mismatch()
		}
		value, err := strconv.ParseFloat(t.text, 64)
		if err != nil {
			return mismatch()
		}
		return value, nil
	default: // integer fields
		if t.kind != tokenNumber {
			return mismatch()
		}
		if value, err := strconv.ParseInt(t.text, 10, 64); err == nil {
			return value, nil
		}
		// Milvus accepts a float literal against an integer field and compares numerically.
		value, err := strconv.ParseFloat(t.text, 64)
		if err != nil || math.IsNaN(value) {
			return mismatch()
		}
		return value, nil
	}
}

func (p *parser) in(field *schemapb.FieldSchema, negate bool) (predicate, error) {
	if open := p.take(); open.kind != tokenPunct || open.text != "[" {
		return nil, fmt.Errorf("expected [ after in at offset %d", open.pos)
	}
	var set []any
	if t := p.peek(); t.kind == tokenPunct && t.text == "]" {
		p.take()
	} else {
		for {
			literal, err := p.literal(field)
			if err != nil {
				return nil, err
			}
			set = append(set, literal)
			sep := p.take()
			if sep.kind == tokenPunct && sep.text == "]" {
				break
			}
			if sep.kind != tokenPunct || sep.text != "," {
				return nil, fmt.Errorf("expected , or ] at offset %d", sep.pos)
			}
		}
	}
	name := field.GetName()
	// Strings and integers are looked up in a map (a primary-key list can hold thousands);
	// floats, which compare across types, fall back to a scan.
	exact := make(map[any]bool, len(set))
	var numeric []any
	for _, member := range set {
		if _, isFloat := member.(float64); isFloat {
			numeric = append(numeric, member)
		} else {
			exact[member] = true
		}
	}
	return func(values map[string]any) bool {
		value := values[name]
		found := exact[value]
		if f, isFloat := value.(float64); isFloat && !found {
			found = exact[int64(f)] && float64(int64(f)) == f
		}
		for _, member := range numeric {
			if found {
				break
			}
			found = compareValues(value, member) == 0
		}
		return found != negate
	}, nil
}

func comparison(name, op string, literal any) predicate {
	return func(values map[string]any) bool {
		order := compareValues(values[name], literal)
		if order == incomparable {
			return op == "!="
		}
		switch op {
		case "==":
			return order == 0
		case "!=":
			return order != 0
		case "<":
			return order < 0
		case "<=":
			return order <= 0
		case ">":
			return order > 0
		default:
			return order >= 0
		}
	}
}

const incomparable = 2

// compareValues orders a stored value against a literal: -1, 0, 1, or incomparable.
func compareValues(stored, literal any) int {
	switch s := stored.(type) {
	case string:
		l, ok := literal.(string)
		if !ok {
			return incomparable
		}
		return strings.Compare(s, l)
	case bool:
		l, ok := literal.(bool)
		if !ok {
			return incomparable
		}
		switch {
		case s == l:
			return 0
		case !s:
			return -1
		default:
			return 1
		}
	case int64:
		switch l := literal.(type) {
		case int64:
			return cmpOrdered(s, l)
		case float64:
			return cmpOrdered(float64(s), l)
		}
	case float64:
		switch l := literal.(type) {
		case int64:
			return cmpOrdered(s, float64(l))
		case float64:
			return cmpOrdered(s, l)
		}
	}
	return incomparable
}

func cmpOrdered[T int64 | float64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	default:
		return 0
	}
}
