import Foundation
import GatepostCatalog
import NIOCore
import PostgresNIO

/// A `timestamptz` to the microsecond, rounded to the nearest one. postgres-nio's own `Date`
/// coding truncates a `Double` product, so a time read back and bound again (a page's cursor,
/// the next batch of a search) can come out one microsecond early and miss its own row; here
/// a stored time always binds back to itself.
struct Timestamp: PostgresNonThrowingEncodable, PostgresDecodable, Sendable {
    var date: Date

    init(_ date: Date) {
        self.date = date
    }

    /// PostgreSQL counts from 2000-01-01, Foundation from 2001-01-01: 366 days apart.
    static let referenceOffset: Int64 = 366 * 86_400 * 1_000_000
    /// The microseconds past which PostgreSQL has no timestamp (and refuses the value, rather
    /// than this code trapping on a conversion).
    static let limit = Double(Int64(1) << 62)

    static var psqlType: PostgresDataType { .timestamptz }
    static var psqlFormat: PostgresFormat { .binary }

    func encode<JSONEncoder: PostgresJSONEncoder>(into byteBuffer: inout ByteBuffer, context: PostgresEncodingContext<JSONEncoder>) {
        let micros = (date.timeIntervalSinceReferenceDate * 1_000_000).rounded()
        let clamped = micros.isNaN ? -Self.limit : min(max(micros, -Self.limit), Self.limit)
        byteBuffer.writeInteger(Int64(clamped) + Self.referenceOffset)
    }

    init<JSONDecoder: PostgresJSONDecoder>(
        from buffer: inout ByteBuffer, type: PostgresDataType, format: PostgresFormat, context: PostgresDecodingContext<JSONDecoder>
    ) throws {
        guard type == .timestamptz || type == .timestamp, format == .binary, buffer.readableBytes == 8,
              let micros = buffer.readInteger(as: Int64.self)
        else { throw PostgresDecodingError.Code.typeMismatch }
        // 'infinity' and '-infinity' are Int64.max and .min: far enough either way.
        let (sinceReference, overflow) = micros.subtractingReportingOverflow(Self.referenceOffset)
        date = overflow ? (micros > 0 ? .distantFuture : .distantPast)
            : Date(timeIntervalSinceReferenceDate: Double(sinceReference) / 1_000_000)
    }
}

/// A `jsonb` value: JSON text written by Foundation's encoder, bound in jsonb's binary form
/// (a version byte, then the text).
struct JSONB: PostgresNonThrowingEncodable, PostgresDecodable, Sendable {
    var json: Data

    init(json: Data) {
        self.json = json
    }

    init<Value: Encodable>(encoding value: Value) throws {
        json = try JSONEncoder().encode(value)
    }

    static var psqlType: PostgresDataType { .jsonb }
    static var psqlFormat: PostgresFormat { .binary }

    func encode<JSONEncoder: PostgresJSONEncoder>(into byteBuffer: inout ByteBuffer, context: PostgresEncodingContext<JSONEncoder>) {
        byteBuffer.writeInteger(UInt8(1))
        byteBuffer.writeBytes(json)
    }

    init<JSONDecoder: PostgresJSONDecoder>(
        from buffer: inout ByteBuffer, type: PostgresDataType, format: PostgresFormat, context: PostgresDecodingContext<JSONDecoder>
    ) throws {
        switch (format, type) {
        case (.binary, .jsonb):
            guard buffer.readInteger(as: UInt8.self) == 1 else { throw PostgresDecodingError.Code.failure }
            json = Data(buffer.readableBytesView)
        case (_, .json), (_, .jsonb), (_, .text):
            json = Data(buffer.readableBytesView)
        default:
            throw PostgresDecodingError.Code.typeMismatch
        }
        buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
    }

    /// The value, or nil when the JSON is not one (as SQLiteCatalog reads its JSON columns: a
    /// column nothing can read is no value).
    func decoded<Value: Decodable>(as type: Value.Type) -> Value? {
        try? JSONDecoder().decode(type, from: json)
    }
}

/// A statement assembled in pieces: each value goes in as a bound parameter (`$n`), never into
/// the SQL text, which holds only what this module wrote.
struct Statement {
    private(set) var sql: String
    private(set) var binds = PostgresBindings()

    init(_ sql: String = "") {
        self.sql = sql
    }

    mutating func append(_ text: String) {
        sql += text
    }

    /// Binds `value` and returns its placeholder.
    mutating func bind<Value: PostgresNonThrowingEncodable>(_ value: Value) -> String {
        binds.append(value)
        return "$\(binds.count)"
    }

    mutating func bind<Value: PostgresNonThrowingEncodable>(_ value: Value?) -> String {
        binds.append(value)
        return "$\(binds.count)"
    }

    var query: PostgresQuery {
        PostgresQuery(unsafeSQL: sql, binds: binds)
    }
}

extension PostgresRandomAccessRow {
    func value<Value: PostgresDecodable>(_ column: String, as type: Value.Type = Value.self) throws -> Value {
        try self[column].decode(Value.self)
    }

    func time(_ column: String) throws -> Date {
        try self[column].decode(Timestamp.self).date
    }

    func optionalTime(_ column: String) throws -> Date? {
        try self[column].decode(Timestamp?.self)?.date
    }

    func json<Value: Decodable>(_ column: String, as type: Value.Type) throws -> Value? {
        try self[column].decode(JSONB?.self)?.decoded(as: type)
    }
}

extension String {
    /// The text up to its first NUL: what a PostgreSQL `text` (or a jsonb string) can hold, and
    /// what SQLite's TEXT columns give back anyway (they are read up to the NUL).
    var storable: String {
        guard utf8.contains(0) else { return self }
        return String(self[..<(firstIndex(of: "\0") ?? endIndex)])
    }
}

extension Optional where Wrapped == String {
    var storable: String? { map(\.storable) }
}
