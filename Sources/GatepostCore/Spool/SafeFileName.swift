import Foundation
import GatepostMIME

/// Turns a file name a sender chose into one that is safe to create in a spool or delivery
/// folder: one path component, no control characters, not `.`/`..`, no Windows device names,
/// NFC-normalized and at most 200 bytes (keeping the extension).
public enum SafeFileName {
    public static let fallback = "attachment"

    public static func make(_ proposed: String) -> String {
        // Only the last component counts: "../../etc/passwd" and "C:\\x\\y.txt" keep their base name.
        var name = proposed.split(whereSeparator: { $0 == "/" || $0 == "\\" }).last.map(String.init) ?? ""
        // Most names are printable ASCII: already NFC, no control or format characters, no
        // Unicode spaces; they skip Foundation's normalization and trimming (a few percent of
        // a poll's CPU otherwise).
        let isPrintableASCII = name.utf8.allSatisfy { (0x20...0x7E).contains($0) }
        if !isPrintableASCII {
            name = name.precomposedStringWithCanonicalMapping
        }
        name = String(String.UnicodeScalarView(name.unicodeScalars.filter { scalar in
            !(scalar.properties.generalCategory == .control || scalar.properties.generalCategory == .format
              || scalar == ":" || scalar == "*" || scalar == "?" || scalar == "\"" || scalar == "<" || scalar == ">" || scalar == "|")
        }))
        name = isPrintableASCII ? name.trimmingASCIIWhitespace() : name.trimmingCharacters(in: .whitespaces)
        // Leading dots would hide the file or make it `..`; trailing dots and spaces trouble Windows shares.
        while name.hasPrefix(".") { name.removeFirst() }
        while name.hasSuffix(".") || name.hasSuffix(" ") { name.removeLast() }
        if name.isEmpty { return fallback }
        let stem = (name as NSString).deletingPathExtension.uppercased()
        if reservedDeviceNames.contains(stem) { name = "_" + name }
        return truncate(name, maxBytes: 200)
    }

    private static let reservedDeviceNames: Set<String> = Set(["CON", "PRN", "AUX", "NUL"]
        + (1...9).map { "COM\($0)" } + (1...9).map { "LPT\($0)" })

    static func truncate(_ name: String, maxBytes: Int) -> String {
        guard name.utf8.count > maxBytes else { return name }
        let ext = (name as NSString).pathExtension
        let keepExtension = !ext.isEmpty && ext.utf8.count < 20
        var stem = keepExtension ? (name as NSString).deletingPathExtension : name
        let budget = maxBytes - (keepExtension ? ext.utf8.count + 1 : 0)
        while stem.utf8.count > budget { stem.removeLast() }
        return keepExtension ? "\(stem).\(ext)" : stem
    }

    /// `name`, or `stem (2).ext`, `stem (3).ext`... so that no two files in `taken` collide.
    public static func unique(_ name: String, avoiding taken: Set<String>) -> String {
        guard taken.contains(name) else { return name }
        let ext = (name as NSString).pathExtension
        let stem = ext.isEmpty ? name : (name as NSString).deletingPathExtension
        var counter = 2
        while true {
            let candidate = ext.isEmpty ? "\(stem) (\(counter))" : "\(stem) (\(counter)).\(ext)"
            if !taken.contains(candidate) { return candidate }
            counter += 1
        }
    }
}
