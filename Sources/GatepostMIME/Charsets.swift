import Foundation

/// Text in header fields and text parts arrives in whatever charset the sender chose. This maps
/// the IANA names seen in practice to Foundation encodings and never fails: unknown charsets and
/// invalid bytes decode as UTF-8 with replacement, then Latin-1, so no byte is silently lost.
public enum Charset {
    public static func encoding(named name: String) -> String.Encoding? {
        switch name.lowercased().trimmingCharacters(in: .whitespaces) {
        case "utf-8", "utf8": .utf8
        case "us-ascii", "ascii", "ansi_x3.4-1968": .ascii
        case "iso-8859-1", "latin1", "iso_8859-1", "l1": .isoLatin1
        case "iso-8859-2", "latin2": .isoLatin2
        case "windows-1252", "cp1252": .windowsCP1252
        case "windows-1250", "cp1250": .windowsCP1250
        case "windows-1251", "cp1251": .windowsCP1251
        case "windows-1253", "cp1253": .windowsCP1253
        case "windows-1254", "cp1254": .windowsCP1254
        case "utf-16": .utf16
        case "utf-16be": .utf16BigEndian
        case "utf-16le": .utf16LittleEndian
        case "shift_jis", "shift-jis", "sjis": .shiftJIS
        case "euc-jp": .japaneseEUC
        case "iso-2022-jp": .iso2022JP
        // ISO-8859-15 differs from Latin-1 in eight code points; Latin-1 keeps every byte.
        case "iso-8859-15", "latin9": .isoLatin1
        default: nil
        }
    }

    /// Decodes `bytes` in `charset`, falling back so that the result is never empty for non-empty input.
    public static func decode<Bytes: Collection>(_ bytes: Bytes, charset: String?) -> String where Bytes.Element == UInt8 {
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
