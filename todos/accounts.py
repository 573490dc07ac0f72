"""Sign-up, login and logout: how an API client gets the token it sends as `Token <key>`, and
how it gives it up."""

from django.contrib.auth import authenticate, get_user_model, password_validation
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from todos import services
from todos.authentication import PrimaryTokenAuthentication
from todos.fields import RejectUnknownFieldsMixin, StrictCharField

TOKEN_RESPONSE = inline_serializer(
    "TokenResponse",
    {"token": serializers.CharField(help_text="the key, shown this once; send `Token <key>`")},
)


class CredentialsSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    username = StrictCharField(max_length=150)
    password = StrictCharField(max_length=128, write_only=True, trim_whitespace=False)


class RegisterSerializer(CredentialsSerializer):
    def validate_username(self, value):
        field = get_user_model()._meta.get_field("username")
        for validator in field.validators:
            try:
                validator(value)
            except DjangoValidationError as exc:
                raise serializers.ValidationError(exc.messages) from None
        return value

    def validate(self, attrs):
        candidate = get_user_model()(username=attrs["username"])
        try:
            password_validation.validate_password(attrs["password"], user=candidate)
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"password": exc.messages}) from None
        return attrs


class RegisterView(APIView):
    """`POST {"username", "password"}` → 201 `{"token"}`; no authentication needed."""

    authentication_classes: list = []
    permission_classes: list = []

    @extend_schema(request=RegisterSerializer, responses={201: TOKEN_RESPONSE})
    def post(self, request):
        serializer = RegisterSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            token = services.user_register(**serializer.validated_data)
        except services.UsernameTaken:
            return Response(
                {"username": ["A user with that username already exists."]},
                status=status.HTTP_400_BAD_REQUEST,
            )
        return Response({"token": token.key}, status=status.HTTP_201_CREATED)


class TokenView(APIView):
    """`POST {"username", "password"}` → 200 `{"token"}`, a new token on every call (one per
    device or script), each valid for `API_TOKEN_TTL`."""

    authentication_classes: list = []
    permission_classes: list = []

    @extend_schema(request=CredentialsSerializer, responses={200: TOKEN_RESPONSE})
    def post(self, request):
        serializer = CredentialsSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = authenticate(request=request, **serializer.validated_data)
        if user is None or not user.is_active:
            return Response(
                {"detail": "Unable to log in with the provided credentials."},
                status=status.HTTP_400_BAD_REQUEST,
            )
        return Response({"token": services.user_token_issue(user=user, name="login").key})


class LogoutView(APIView):
    """`POST` → 204: the token of this request is revoked, refused at once by every replica.

    Token authentication only: a browser session has no token to give up.
    """

    authentication_classes = [PrimaryTokenAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses={204: None}, summary="Revoke this request's token")
    def post(self, request):
        services.user_token_revoke(digest=request.auth.digest)
        return Response(status=status.HTTP_204_NO_CONTENT)


class LogoutAllView(APIView):
    """`POST` → 204: every token of the caller is revoked (every device and script logged out)."""

    authentication_classes = [PrimaryTokenAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses={204: None}, summary="Revoke all the caller's tokens")
    def post(self, request):
        services.user_tokens_revoke(user_id=request.user.pk)
        return Response(status=status.HTTP_204_NO_CONTENT)
