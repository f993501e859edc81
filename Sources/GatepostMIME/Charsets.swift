import Foundation

/// Text in header fields and text parts arrives in whatever charset the sender chose. This maps
/// the IANA names seen in practice to Foundation encodings and never fails: unknown charsets and
/// invalid bytes decode as UTF-8 with replacement, then Latin-1, so no byte is silently lost.
public enum Charset {
    public static func encoding(named name: String) -> String.Encoding? {
        let key = name.trimmingASCIIWhitespace().asciiLowercased()
        switch key {
        case "utf-8", "utf8": return .utf8
        case "us-ascii", "ascii", "ansi_x3.4-1968": return .ascii
        case "iso-8859-1", "latin1", "iso_8859-1", "l1": return .isoLatin1
        default: break
        }
        if let encoding = String.Encoding(ianaName: key) { return encoding }
        return coreFoundationEncodings[key].map { String.Encoding(rawValue: 0x8000_0000 | $0) }
    }

    /// Charsets Foundation converts through CoreFoundation but does not know by IANA name:
    /// CFStringEncoding values (CFStringEncodingExt.h), which Foundation takes with the top bit set.
    private static let coreFoundationEncodings: [String: UInt] = {
        var table: [String: UInt] = [
            "koi8-r": 0x0A02, "koi8-u": 0x0A08,
            "big5": 0x0A03, "big5-hkscs": 0x0A06, "cp950": 0x0A03,
            // GB 18030 is a superset of GBK, which is a superset of GB 2312.
            "gb2312": 0x0632, "gbk": 0x0632, "cp936": 0x0632, "gb18030": 0x0632, "x-gbk": 0x0632,
            "euc-cn": 0x0632, "iso-8859-15": 0x020F, "latin9": 0x020F, "latin-9": 0x020F,
            "cp866": 0x041B, "ibm866": 0x041B, "cp855": 0x0413, "cp850": 0x0410, "ibm850": 0x0410, "cp437": 0x0400,
            "euc-kr": 0x0940, "ks_c_5601-1987": 0x0422, "cp949": 0x0422, "tis-620": 0x020B, "windows-874": 0x041D,
        ]
        for part in 1...16 where part != 12 {
            table["iso-8859-\(part)"] = table["iso-8859-\(part)"] ?? 0x0200 + UInt(part)
            table["iso_8859-\(part)"] = 0x0200 + UInt(part)
        }
        let windows: [Int: UInt] = [1250: 0x0501, 1251: 0x0502, 1252: 0x0500, 1253: 0x0503, 1254: 0x0504,
                                    1255: 0x0505, 1256: 0x0506, 1257: 0x0507, 1258: 0x0508]
        for (page, value) in windows {
            table["windows-\(page)"] = value
            table["cp\(page)"] = value
        }
        return table
    }()

    /// Decodes `bytes` in `charset`, falling back so that the result is never empty for non-empty input.
    public static func decode<Bytes: Collection>(_ bytes: Bytes, charset: String?) -> String where Bytes.Element == UInt8 {
        // Most text is ASCII or UTF-8: validate it without a trip through Foundation.
        if charset == nil || charset.map({ encoding(named: $0) == .utf8 || encoding(named: $0) == .ascii }) == true,
           let text = String(validating: bytes, as: UTF8.self) {
            return text
        }
        let data = Data(bytes)
        if let charset, let encoding = encoding(named: charset), let text = String(data: data, encoding: encoding) {
            return text
        }
        if let text = String(data: data, encoding: .utf8) {
            return text
        }
        // Raw 8-bit without a declared charset: Latin-1 maps every byte to a character.
        return String(data: data, encoding: .isoLatin1) ?? String(decoding: bytes, as: UTF8.self)
    }
}
