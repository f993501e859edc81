import Foundation

/// One attempt to deliver a received file to an application: what a transfer's delivery
/// history shows, oldest first.
public struct DeliveryAttempt: Sendable, Hashable, Codable {
    public enum Outcome: String, Sendable, Hashable, Codable {
        /// The file is in the application's folder (and its command, if any, succeeded).
        case delivered
        /// It failed and will be tried again at ``DeliveryAttempt/retryAt``.
        case retrying
        /// It failed for good: an operator's retry or redelivery is what is left.
        case failed
    }

    public var at: Date
    public var application: String
    public var outcome: Outcome
    public var deliveredPath: String?
    public var error: String?
    public var retryAt: Date?

    /// An attempt as a store reads it back; new attempts are made by the factories below.
    public init(at: Date, application: String, outcome: Outcome, deliveredPath: String?, error: String?, retryAt: Date?) {
        self.at = at
        self.application = application
        self.outcome = outcome
        self.deliveredPath = deliveredPath
        self.error = error
        self.retryAt = retryAt
    }

    public static func delivered(at: Date, application: String, path: String) -> DeliveryAttempt {
        DeliveryAttempt(at: at, application: application, outcome: .delivered, deliveredPath: path, error: nil, retryAt: nil)
    }

    public static func retrying(at: Date, application: String, error: String, retryAt: Date) -> DeliveryAttempt {
        DeliveryAttempt(at: at, application: application, outcome: .retrying, deliveredPath: nil, error: error, retryAt: retryAt)
    }

    public static func failed(at: Date, application: String, error: String) -> DeliveryAttempt {
        DeliveryAttempt(at: at, application: application, outcome: .failed, deliveredPath: nil, error: error, retryAt: nil)
    }
}
