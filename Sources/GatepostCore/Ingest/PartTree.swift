import Foundation
import GatepostMIME

/// One part of a message as the console shows it: where it sits, what it says it is, how big.
public struct PartSummary: Codable, Sendable, Hashable {
    public var index: Int
    public var parent: Int?
    public var depth: Int
    public var contentType: String
    public var fileName: String?
    /// `attachment` or `inline`, when the part says.
    public var disposition: String?
    /// Bytes of its body, decoded; 0 for a multipart.
    public var size: Int64
}

/// The part tree of a message kept whole (a RECOVER or a DUPLICATE): why it is what it is, read
/// again from the spool as a stream (never whole in memory), with the parser's limits.
public enum PartTree {
    public struct Tree: Codable, Sendable, Hashable {
        public var parts: [PartSummary]
        /// Where reading stopped (a limit, a malformed structure), when it did.
        public var problem: String?
    }

    public static func read(path: String, limits: MIMELimits = .default) throws -> Tree {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw SpoolError("open", path: path, errno: errno) }
        defer { try? handle.close() }
        var parser = MIMEStreamParser(limits: limits)
        var collector = Collector()
        do {
            while let chunk = try handle.read(upToCount: 64 << 10), !chunk.isEmpty {
                try chunk.withUnsafeBytes { try parser.feed($0, into: &collector) }
            }
            try parser.finish(into: &collector)
        } catch {
            return Tree(parts: collector.parts, problem: "\(error)")
        }
        return Tree(parts: collector.parts, problem: nil)
    }

    private struct Collector: MIMEPartHandler {
        var parts: [PartSummary] = []

        mutating func partDidBegin(_ part: MIMEPart) throws {
            parts.append(PartSummary(
                index: part.index, parent: part.parent, depth: part.depth, contentType: part.contentType.mimeType,
                fileName: part.fileName, disposition: part.disposition.map { $0.isAttachment ? "attachment" : "inline" }, size: 0
            ))
        }

        mutating func part(_ index: Int, didReceive bytes: UnsafeRawBufferPointer) throws {
            guard let position = parts.lastIndex(where: { $0.index == index }) else { return }
            parts[position].size += Int64(bytes.count)
        }

        mutating func partDidEnd(_ index: Int) throws {}
    }
}
