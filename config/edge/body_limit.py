"""Refuse oversized request bodies with 413 before anything reads them."""

from django.conf import settings
from django.http import JsonResponse


class RequestBodyLimitMiddleware:
    """Answer 413 when the declared body exceeds `DATA_UPLOAD_MAX_MEMORY_SIZE`.

    Django's own check raises `RequestDataTooBig` only for form parsing and turns it into a 400;
    DRF's JSON parser reads the stream directly and would accept any size. nginx enforces the
    same limit (`client_max_body_size 1m`) for bodies sent without a Content-Length.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return JsonResponse({"detail": "Invalid Content-Length header."}, status=400)
        if limit is not None and length > limit:
            return JsonResponse(
                {"detail": f"Request body is larger than the limit of {limit} bytes."},
                status=413,
            )
        return self.get_response(request)
