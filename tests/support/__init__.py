"""Helpers the whole test-suite shares: throwaway servers, production-like apps."""
