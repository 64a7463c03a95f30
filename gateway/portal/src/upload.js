// A multipart upload that reports its progress (fetch cannot): XMLHttpRequest with the session token, the
// answer and errors read exactly as api() reads them.
import { session } from './session.js'
import { ApiError, errorFrom } from './api.js'

export function upload(path, form, query, onProgress) {
  const u = new URL(`/api/v1/${path}`, window.location.origin)
  for (const [k, v] of Object.entries(query || {})) if (v) u.searchParams.set(k, v)
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest()
    xhr.open('POST', u.pathname + u.search)
    if (session.token) xhr.setRequestHeader('Authorization', `Bearer ${session.token}`)
    xhr.setRequestHeader('Accept', 'application/json')
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(Math.round((e.loaded / e.total) * 100))
    xhr.upload.onload = () => onProgress(100)
    xhr.onerror = () => reject(new ApiError(0, 'network', '无法连接服务器，请检查网络 (cannot reach the server)'))
    xhr.onload = () => {
      let data = null
      try {
        data = JSON.parse(xhr.responseText)
      } catch {
        data = null
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(data)
      else reject(errorFrom(xhr.status, data))
    }
    xhr.send(form)
  })
}
