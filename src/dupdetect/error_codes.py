"""Every ``error.code`` the API answers with, for a whole request or for one item of it: one
catalogue, so that a code is never misspelt and the README lists each one (a unit test checks).
Codes are stable; messages are for people and may change."""

from __future__ import annotations

from enum import StrEnum


class Code(StrEnum):
    # One image of a request (``items[i].error.code``); the others are stored.
    UNSUPPORTED_FORMAT = "unsupported_format"
    CORRUPT_IMAGE = "corrupt_image"
    TOO_MANY_PIXELS = "too_many_pixels"
    TOO_MANY_SCANS = "too_many_scans"
    DECODE_TIMEOUT = "decode_timeout"
    EMPTY_IMAGE = "empty_image"
    IMAGE_TOO_LARGE = "image_too_large"
    INVALID_BASE64 = "invalid_base64"
    INVALID_ITEM = "invalid_item"
    INVALID_FILENAME = "invalid_filename"
    INVALID_URL = "invalid_url"
    URL_NOT_ALLOWED = "url_not_allowed"
    FETCH_FAILED = "fetch_failed"
    FETCH_TIMEOUT = "fetch_timeout"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    # A whole request.
    NO_IMAGES = "no_images"
    NO_VALID_IMAGES = "no_valid_images"
    TOO_MANY_IMAGES = "too_many_images"
    REQUEST_TOO_LARGE = "request_too_large"
    INVALID_JSON = "invalid_json"
    INVALID_REQUEST = "invalid_request"
    INVALID_MULTIPART = "invalid_multipart"
    UNEXPECTED_FIELD = "unexpected_field"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    INVALID_ID = "invalid_id"
    SAME_IMAGE = "same_image"
    BODY_TIMEOUT = "body_timeout"
    CLIENT_DISCONNECTED = "client_disconnected"
    # Keys, limits, hosts.
    MISSING_API_KEY = "missing_api_key"
    INVALID_API_KEY = "invalid_api_key"
    TOO_MANY_REQUESTS = "too_many_requests"
    TOO_MANY_REQUESTS_IN_FLIGHT = "too_many_requests_in_flight"
    HOST_NOT_ALLOWED = "host_not_allowed"
    CROSS_ORIGIN_WRITE = "cross_origin_write"
    # Nothing with that id in the caller's collection.
    NOT_FOUND = "not_found"
    """A route that does not exist (with ``method_not_allowed``, answered by the framework)."""
    METHOD_NOT_ALLOWED = "method_not_allowed"
    REQUEST_NOT_FOUND = "request_not_found"
    IMAGE_NOT_FOUND = "image_not_found"
    THUMBNAIL_NOT_FOUND = "thumbnail_not_found"
    ORIGINAL_NOT_FOUND = "original_not_found"
    DECISION_NOT_FOUND = "decision_not_found"
    # The service.
    OVERLOADED = "overloaded"
    STORE_UNAVAILABLE = "store_unavailable"
    SHUTTING_DOWN = "shutting_down"
    INTERNAL_ERROR = "internal_error"
