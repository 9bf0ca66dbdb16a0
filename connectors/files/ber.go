package files

import (
	"bytes"
	"errors"
	"fmt"

	ber "github.com/go-asn1-ber/asn1-ber"
)

// BER (X.690) lets a writer use indefinite lengths (ended by an
// end-of-contents marker) and split strings into constructed chunks; DER
// allows neither. Bouncy Castle writes PKCS#12 that way, and go-pkcs12 reads
// DER only. berToDER turns one BER element into DER with asn1-ber, the BER
// library go-ldap is built on: asn1-ber decodes indefinite lengths and
// re-encodes every element with a definite length; berToDER adds what it
// does not do, flattening constructed strings into primitive ones.
//
// asn1-ber recurses once per nesting level and copies every element into
// each of its ancestors, without limits: 32 levels over a 10 MiB string cost
// it over a gigabyte. checkBERBounds therefore walks the element headers
// first, without recursion, and refuses input nested deeper, made of more
// elements, or costing more copying than any PKCS#12 layer needs.

const (
	// berMaxDepth is well above the deepest PKCS#12 layer (about 12 levels:
	// a PBES2-encrypted content inside the AuthenticatedSafe).
	berMaxDepth = 32
	// berMaxElements bounds asn1-ber's allocations per element (about
	// 500 bytes). Bouncy Castle's layers are a few dozen elements plus one
	// per 1000-byte chunk of a string.
	berMaxElements = 20_000
	// berMaxCopy bounds the bytes asn1-ber copies: each byte once per
	// level it is nested in (asn1-ber and berToDER then allocate about
	// five times that). A PKCS#12 layer is 5 to 10 levels deep, so this
	// allows files of 2 MiB and more, a thousand certificates.
	berMaxCopy = 16 << 20
)

var errBERBounds = errors.New("BER nested too deep, too many elements or too large")

// berToDER returns the DER encoding of the single BER element data holds
// (nothing may follow it): definite lengths everywhere, constructed strings
// made primitive. Content is otherwise kept as is (SET OF elements are not
// sorted, for one): the point is to be readable by encoding/asn1, not to
// produce a canonical encoding.
func berToDER(data []byte) ([]byte, error) {
	n, err := checkBERBounds(data, berMaxDepth, berMaxElements, berMaxCopy)
	if err != nil {
		return nil, err
	}
	if n != len(data) {
		return nil, fmt.Errorf("BER: %d bytes after the element", len(data)-n)
	}
	r := bytes.NewReader(data)
	p, err := ber.ReadPacket(r)
	if err != nil {
		return nil, fmt.Errorf("BER: %w", err)
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("BER: %d bytes after the element", r.Len())
	}
	return derOf(p)
}

// derOf re-encodes a decoded element. asn1-ber computes identifiers and
// definite lengths; the depth is bounded by checkBERBounds.
func derOf(p *ber.Packet) ([]byte, error) {
	if p.TagType == ber.TypePrimitive {
		return primitive(p.ClassType, p.Tag, p.Data.Bytes()), nil
	}
	if p.ClassType == ber.ClassUniversal && isStringTag(p.Tag) {
		content, err := flattenString(p, p.Tag)
		if err != nil {
			return nil, err
		}
		return primitive(ber.ClassUniversal, p.Tag, content), nil
	}
	out := ber.Encode(p.ClassType, ber.TypeConstructed, p.Tag, nil, "")
	for _, c := range p.Children {
		b, err := derOf(c)
		if err != nil {
			return nil, err
		}
		out.Data.Write(b)
	}
	return out.Bytes(), nil
}

func primitive(class ber.Class, tag ber.Tag, content []byte) []byte {
	out := ber.Encode(class, ber.TypePrimitive, tag, nil, "")
	out.Data.Write(content)
	return out.Bytes()
}

// isStringTag reports the universal types BER may encode constructed,
// in chunks (X.690 8.6, 8.7, 8.23): BIT STRING, OCTET STRING, and the
// restricted character strings and time types.
func isStringTag(t ber.Tag) bool {
	switch t {
	case ber.TagBitString, ber.TagOctetString, ber.TagObjectDescriptor, ber.TagUTF8String, ber.TagBMPString:
		return true
	}
	// NumericString to UniversalString, UTCTime and GeneralizedTime included
	return t >= ber.TagNumericString && t <= ber.TagUniversalString
}

// flattenString concatenates the chunks of a constructed string: each chunk
// has the string's own universal tag and may itself be constructed. A BIT
// STRING's chunks each start with their count of unused bits, which only
// the last one may have.
func flattenString(p *ber.Packet, tag ber.Tag) ([]byte, error) {
	var content []byte
	if tag == ber.TagBitString {
		content = []byte{0}
	}
	var walk func(q *ber.Packet) error
	walk = func(q *ber.Packet) error {
		for _, c := range q.Children {
			if c.ClassType != ber.ClassUniversal || c.Tag != tag {
				return fmt.Errorf("BER: a chunk of a constructed string of tag %d is tagged %d", tag, c.Tag)
			}
			if c.TagType == ber.TypeConstructed {
				if err := walk(c); err != nil {
					return err
				}
				continue
			}
			b := c.Data.Bytes()
			if tag != ber.TagBitString {
				content = append(content, b...)
				continue
			}
			if len(b) == 0 || b[0] > 7 || content[0] != 0 {
				return errors.New("BER: bad chunk in a constructed BIT STRING")
			}
			content[0] = b[0]
			content = append(content, b[1:]...)
		}
		return nil
	}
	if err := walk(p); err != nil {
		return nil, err
	}
	return content, nil
}

// checkBERBounds walks the headers of the BER element data starts with,
// with an explicit stack, and returns its size. It fails when the element
// is malformed, nested deeper than maxDepth, made of more than maxElements
// elements, or would have asn1-ber copy more than maxCopy bytes. It decodes
// nothing else: asn1-ber does.
func checkBERBounds(data []byte, maxDepth, maxElements, maxCopy int) (int, error) {
	const indefinite = -1
	var ends []int // end offset of each open constructed element, or indefinite
	pos, elements, copied := 0, 0, 0
	for {
		for len(ends) > 0 && ends[len(ends)-1] == pos {
			ends = ends[:len(ends)-1] // a definite-length element is complete
		}
		if elements > 0 && len(ends) == 0 {
			return pos, nil
		}
		limit := len(data)
		if len(ends) > 0 && ends[len(ends)-1] != indefinite {
			limit = ends[len(ends)-1]
		}
		if limit-pos >= 2 && data[pos] == 0 && data[pos+1] == 0 {
			// end-of-contents: closes the innermost element, which must be
			// of indefinite length
			if len(ends) == 0 || ends[len(ends)-1] != indefinite {
				return 0, errors.New("BER: unexpected end-of-contents")
			}
			ends = ends[:len(ends)-1]
			pos += 2
			continue
		}
		constructed, length, n, err := berHeader(data[pos:limit])
		if err != nil {
			return 0, err
		}
		if elements++; elements > maxElements {
			return 0, errBERBounds
		}
		// this header, and a primitive's content, are copied once for
		// the element and once for each ancestor
		copied += n * (len(ends) + 1)
		if !constructed && length > 0 {
			copied += length * (len(ends) + 1)
		}
		if copied > maxCopy {
			return 0, errBERBounds
		}
		pos += n
		switch {
		case constructed && length == indefinite:
			ends = append(ends, indefinite)
		case length == indefinite:
			return 0, errors.New("BER: indefinite length on a primitive element")
		case length > limit-pos:
			return 0, errors.New("BER: element longer than what holds it")
		case constructed:
			ends = append(ends, pos+length)
		default:
			pos += length
		}
		if len(ends) > maxDepth {
			return 0, errBERBounds
		}
	}
}

// berHeader reads one identifier and length (X.690 8.1.2, 8.1.3). The
// length is -1 when indefinite. Tags of more than 4 bytes and lengths of
// more than 4 bytes are refused: nothing in a file under the size cap needs
// them.
func berHeader(b []byte) (constructed bool, length, n int, err error) {
	errShort := errors.New("BER: truncated header")
	if len(b) < 2 {
		return false, 0, 0, errShort
	}
	constructed = b[0]&0x20 != 0
	n = 1
	if b[0]&0x1f == 0x1f { // high tag number
		if b[1] == 0x80 {
			return false, 0, 0, errors.New("BER: bad high tag number")
		}
		for ; n < len(b) && b[n]&0x80 != 0; n++ {
			if n > 4 {
				return false, 0, 0, errors.New("BER: tag number too large")
			}
		}
		n++ // the last tag byte
	}
	if n >= len(b) {
		return false, 0, 0, errShort
	}
	l := b[n]
	n++
	switch {
	case l < 0x80:
		return constructed, int(l), n, nil
	case l == 0x80:
		return constructed, -1, n, nil
	case l == 0xff || l > 0x84:
		return false, 0, 0, errors.New("BER: bad or too long length")
	}
	k := int(l & 0x7f)
	if n+k > len(b) {
		return false, 0, 0, errShort
	}
	var l64 uint64
	for _, c := range b[n : n+k] {
		l64 = l64<<8 | uint64(c)
	}
	if n += k; l64 > uint64(len(b)-n) {
		return false, 0, 0, errors.New("BER: element longer than what holds it")
	}
	return constructed, int(l64), n, nil
}
