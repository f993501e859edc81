import Foundation
import GatepostCore
import HTTPTypes
import Hummingbird
import HummingbirdAuth

/// Resolves who a request is from (an API token, the session's login, or the local credential
/// when no accounts exist), makes sure a browser has a session with a CSRF token, and refuses a
/// state-changing request whose CSRF token is missing or wrong. Which permission a route needs
/// is the route's business (``ConsoleRequestContext/require(_:)``).
struct ConsoleAccessMiddleware: RouterMiddleware {
    typealias Context = ConsoleRequestContext

    let authenticator: ConsoleAuthenticator?
    let sessionLifetime: Duration
    /// Behind the control socket: the command line, trusted as the spool's owner, names itself
    /// in `X-Gatepost-Actor`.
    var controlSocket = false

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        var request = request
        if controlSocket {
            // Printable ASCII only: the name goes into the audit trail and the log.
            let named = request.headers[.gatepostActor].map { String($0.unicodeScalars.filter { $0.value > 0x20 && $0.value < 0x7F }.prefix(64)) }
            let actor = named.flatMap { $0.isEmpty ? nil : $0 } ?? "cli"
            context.identity = ConsoleIdentity(name: actor, role: .operator, credential: .controlSocket)
        } else if let authorization = request.headers[.authorization], authorization.lowercased().hasPrefix("bearer ") {
            let token = String(authorization.dropFirst("bearer ".count)).trimmingCharacters(in: .whitespaces)
            guard let identity = authenticator?.identity(bearer: token) else {
                throw ConsoleError.unauthorized("the API token is not known")
            }
            context.identity = identity
        } else {
            var session = context.sessions.session
            // A browser gets a session (and its CSRF token) from the pages; a program calling
            // the API or /metrics without one gets none, so requests cannot fill memory with
            // sessions. One that nobody logs in with lasts half an hour.
            let path = request.uri.path
            if session == nil, !path.hasPrefix("/api/"), path != "/metrics" {
                let fresh = ConsoleSession(identity: nil, csrf: ConsoleAuthenticator.randomHex(bytes: 32))
                context.sessions.createSession(fresh, expiresIn: min(sessionLifetime, .seconds(1800)))
                session = fresh
            }
            context.csrf = session?.csrf
            if authenticator == nil {
                context.identity = ConsoleIdentity(name: "local", role: .operator, credential: .local)
            } else {
                context.identity = session?.identity
            }
        }
        if ![.get, .head, .options].contains(request.method) {
            var submitted = request.headers[.csrfToken]
            if submitted == nil, request.headers[.contentType]?.hasPrefix("application/x-www-form-urlencoded") == true {
                let body = try await request.collectBody(upTo: context.maxUploadSize)
                submitted = FormFields(body).value("csrf")
            }
            guard ConsolePolicy.passesCSRF(credential: context.identity?.credential, sessionToken: context.csrf, submitted: submitted) else {
                throw ConsoleError.forbidden("the form is stale or did not come from this console (CSRF token missing or wrong): reload the page")
            }
        }
        return try await next(request, context)
    }
}

extension HTTPField.Name {
    static let csrfToken = Self("X-CSRF-Token")!
    public static let gatepostActor = Self("X-Gatepost-Actor")!
}

extension ConsoleRequestContext {
    /// The identity, if its role allows `permission`; throws 401 (nobody) or 403 (not allowed).
    func require(_ permission: ConsolePermission) throws -> ConsoleIdentity {
        guard let identity else { throw ConsoleError.unauthorized("log in first") }
        guard ConsolePolicy.allows(identity.role, permission) else {
            throw ConsoleError.forbidden("\(identity.actor) is a \(identity.role.rawValue): only an operator may do this")
        }
        return identity
    }
}

/// `application/x-www-form-urlencoded` fields.
struct FormFields: Sendable {
    var fields: [(String, String)] = []

    init(_ body: ByteBuffer) {
        self.init(String(buffer: body))
    }

    init(_ text: String) {
        for pair in text.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ part: Substring) -> String {
                String(part).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(part)
            }
            fields.append((decode(parts[0]), parts.count > 1 ? decode(parts[1]) : ""))
        }
    }

    func value(_ name: String) -> String? {
        fields.first { $0.0 == name }?.1
    }
}

/// What the console answers when it refuses: an HTTP status and words for the operator.
struct ConsoleError: Error, HTTPResponseError {
    var status: HTTPResponse.Status
    var message: String

    static func unauthorized(_ message: String) -> Self { Self(status: .unauthorized, message: message) }
    static func forbidden(_ message: String) -> Self { Self(status: .forbidden, message: message) }
    static func notFound(_ message: String) -> Self { Self(status: .notFound, message: message) }
    static func badRequest(_ message: String) -> Self { Self(status: .badRequest, message: message) }
    static func conflict(_ message: String) -> Self { Self(status: .conflict, message: message) }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        let data = (try? JSONEncoder().encode(["error": message])) ?? Data("{}".utf8)
        return Response(
            status: status, headers: [.contentType: "application/json; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(bytes: data))
        )
    }
}
