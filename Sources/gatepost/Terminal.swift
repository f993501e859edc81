import Foundation
import GatepostCore
import Logging
import Synchronization

/// What reaches an operator's terminal. Subjects, senders, file names, a server's `-ERR` text
/// and a site's last error come from partners and servers: an ESC sequence in them would clear
/// the screen or set the window title, a CR or LF would forge a row of a table. Every line the
/// command line prints or logs goes through here. JSON output is left to the encoder, which
/// escapes control characters as JSON does.
enum Terminal {
    /// `text` with every control character (C0, DEL, C1) and every bidirectional override or
    /// isolate replaced by U+FFFD; line breaks (LF, and CRLF as one) are kept only when
    /// `keepingLineBreaks`, tabs only then too.
    static func safe(_ text: String, keepingLineBreaks: Bool = false) -> String {
        guard text.unicodeScalars.contains(where: needsReplacing) else { return text }
        var out = String.UnicodeScalarView()
        var previousWasCR = false
        for scalar in text.unicodeScalars {
            defer { previousWasCR = scalar == "\r" }
            if keepingLineBreaks {
                if scalar == "\n" {
                    if previousWasCR { out.removeLast() }
                    out.append(scalar)
                    continue
                }
                if scalar == "\t" {
                    out.append(scalar)
                    continue
                }
            }
            out.append(needsReplacing(scalar) ? "\u{FFFD}" : scalar)
        }
        return String(out)
    }

    static func needsReplacing(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00...0x1F, 0x7F...0x9F: true
        // LRE, RLE, PDF, LRO, RLO; LRI, RLI, FSI, PDI; LRM, RLM, ALM.
        case 0x202A...0x202E, 0x2066...0x2069, 0x200E, 0x200F, 0x061C: true
        default: false
        }
    }

    /// One line on standard output.
    static func line(_ text: String) {
        print(safe(text))
    }

    /// Several lines on standard output (a table whose cells are already safe, a message text).
    static func block(_ text: String) {
        print(safe(text, keepingLineBreaks: true))
    }

    /// `gatepost: message` on standard error.
    static func error(_ message: String) {
        FileHandle.standardError.write(Data("gatepost: \(safe(message))\n".utf8))
    }

    /// The one logging set-up of every command: standard error, at `level`, every message and
    /// metadata value made safe.
    static func bootstrapLogging(level: Logger.Level) {
        LoggingSystem.bootstrap { label in
            var handler = SafeLogHandler(StreamLogHandler.standardError(label: label))
            handler.logLevel = level
            return handler
        }
    }
}

/// A log handler that passes everything to `wrapped` with its text made safe for a terminal.
struct SafeLogHandler: LogHandler {
    var wrapped: StreamLogHandler

    init(_ wrapped: StreamLogHandler) {
        self.wrapped = wrapped
    }

    var logLevel: Logger.Level {
        get { wrapped.logLevel }
        set { wrapped.logLevel = newValue }
    }

    var metadata: Logger.Metadata {
        get { wrapped.metadata }
        set { wrapped.metadata = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { wrapped[metadataKey: key] }
        set { wrapped[metadataKey: key] = newValue }
    }

    func log(
        level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?,
        source: String, file: String, function: String, line: UInt
    ) {
        wrapped.log(
            level: level, message: "\(Terminal.safe(message.description))", metadata: metadata.map(Self.safe),
            source: source, file: file, function: function, line: line
        )
    }

    static func safe(_ metadata: Logger.Metadata) -> Logger.Metadata {
        metadata.mapValues(safe)
    }

    static func safe(_ value: Logger.MetadataValue) -> Logger.MetadataValue {
        switch value {
        case .string(let text): .string(Terminal.safe(text))
        case .stringConvertible(let convertible): .string(Terminal.safe(convertible.description))
        case .array(let values): .array(values.map(safe))
        case .dictionary(let values): .dictionary(values.mapValues(safe))
        }
    }
}

/// One JSON object per line on standard error (`gatepost run --log-format json`): `time`,
/// `level`, `label`, `message`, and the metadata as string fields. JSON escapes control
/// characters itself; a metadata key never replaces one of the four.
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    static func bootstrap(level: Logger.Level) {
        LoggingSystem.bootstrap { label in
            var handler = JSONLogHandler(label: label)
            handler.logLevel = level
            return handler
        }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(
        level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?,
        source: String, file: String, function: String, line: UInt
    ) {
        var object: [String: String] = [:]
        for (key, value) in self.metadata.merging(metadata ?? [:], uniquingKeysWith: { $1 }) {
            object[key] = "\(value)"
        }
        object["time"] = Self.time(Date())
        object["level"] = level.rawValue
        object["label"] = label
        object["message"] = message.description
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else { return }
        FileHandle.standardError.write(data + Data("\n".utf8))
    }

    static func time(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: date)
    }
}

/// `gatepost poll`'s progress line on a terminal: the site, messages, bytes and rate, rewritten
/// in place at most four times a second, and cleared before the summary.
final class TerminalProgress: Sendable {
    private struct State {
        var started: [String: ContinuousClock.Instant] = [:]
        var lastDrawn: ContinuousClock.Instant?
        var drawn = false
    }

    private let state = Mutex(State())

    func update(site: String, messages: Int, bytes: Int64) {
        let now = ContinuousClock.now
        let line: String? = state.withLock { state in
            let started = state.started[site] ?? now
            state.started[site] = started
            if let last = state.lastDrawn, now - last < .milliseconds(250) { return nil }
            state.lastDrawn = now
            state.drawn = true
            return Self.line(site: site, messages: messages, bytes: bytes, elapsed: now - started)
        }
        if let line { FileHandle.standardError.write(Data("\r\u{1B}[K\(Terminal.safe(line))".utf8)) }
    }

    func clear() {
        if state.withLock({ $0.drawn }) { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }

    static func line(site: String, messages: Int, bytes: Int64, elapsed: Duration) -> String {
        let seconds = elapsed.timeInterval
        let rate = seconds > 0.5 ? ", \(Formatting.bytes(Int64(Double(bytes) / seconds)))/s" : ""
        return "\(site): \(messages) message\(messages == 1 ? "" : "s"), \(Formatting.bytes(bytes))\(rate)"
    }
}
